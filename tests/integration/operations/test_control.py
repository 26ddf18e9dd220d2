"""Pause, resume and cancel (``dispatcher.operations.control``) with the fan-out sender, against the
simulator over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, update

from dispatcher.db import Batch, Campaign, Message
from dispatcher.errors import DispatcherError
from dispatcher.operations import control
from dispatcher.sending import claims, fanout
from dispatcher.sending.batch import Outcome, SendContext
from tests.conftest import BOTH
from tests.integration.conftest import personalised


def campaign_of(context: SendContext) -> int:
    with context.db.session() as session:
        found = session.scalar(select(func.max(Campaign.id)))
    assert found is not None
    return found


def requests_seen(url: str) -> int:
    return int(httpx.get(f"{url}/_simulator/stats").json()["requests"])


@BOTH
def test_a_paused_campaign_sends_nothing_and_resumes_where_it_stopped(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 30, provider)
    campaign_id = campaign_of(ctx)
    fanout.send_many(ctx, sender, batch_ids[:10], "task-1")
    with ctx.db.session() as session:
        control.pause(session, campaign_id)
    skipped = fanout.send_many(ctx, sender, batch_ids[10:], "task-2")
    assert set(skipped.values()) == {Outcome.SKIPPED}
    assert requests_seen(simulator) == 10
    with ctx.db.session() as session:
        resumed = control.resume(session, campaign_id)
    assert resumed.batch_ids == batch_ids[10:] and not resumed.prepare_again
    again = fanout.send_many(ctx, sender, batch_ids, "task-3")  # everything, queued twice
    assert [again[b] for b in batch_ids] == [Outcome.SKIPPED] * 10 + [Outcome.SUBMITTED] * 20
    stats = httpx.get(f"{simulator}/_simulator/stats").json()
    assert len(stats["destinations"]) == 30 and set(stats["destinations"].values()) == {1}


@BOTH
def test_a_slice_claimed_before_the_pause_is_handed_back_before_it_leaves(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 5, provider)
    campaign_id = campaign_of(ctx)
    outcomes: dict[str, Outcome] = {}
    [part] = claims.peek(ctx, sender, batch_ids, "task-1", outcomes)
    claimed = claims.claim(ctx, sender, part, batch_ids, "task-1", outcomes)
    assert len(claimed) == 5
    with ctx.db.session() as session:  # paused while the slice waits for its slot
        control.pause(session, campaign_id)
    grant = ctx.throttle.reserve(part.source, 5, part.rate)
    results = fanout._send_paced(ctx, sender, part, grant, claimed, outcomes)
    assert results == {} and set(outcomes.values()) == {Outcome.SKIPPED}
    assert requests_seen(simulator) == 0
    with ctx.db.session() as session:
        assert set(session.scalars(select(Batch.state))) == {"pending"}
        assert set(session.scalars(select(Batch.attempts))) == {0}
        assert set(session.scalars(select(Message.attempts))) == {0}


@BOTH
def test_cancel_closes_what_never_left_and_keeps_what_did(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 8, provider)
    campaign_id = campaign_of(ctx)
    fanout.send_many(ctx, sender, batch_ids[:3], "task-1")
    with ctx.db.session() as session:
        never = control.cancel(session, campaign_id)
    assert never == 5
    assert set(fanout.send_many(ctx, sender, batch_ids, "task-2").values()) == {Outcome.SKIPPED}
    assert requests_seen(simulator) == 3
    with ctx.db.session() as session:
        statuses = dict(
            session.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        )
        reasons = set(
            session.scalars(select(Message.result_description).where(Message.status == "cancelled"))
        )
    assert statuses == {"submitted": 3, "cancelled": 5}
    assert reasons == {control.CANCELLED_REASON}
    with ctx.db.session() as session, pytest.raises(DispatcherError, match="is cancelled"):
        control.resume(session, campaign_id)
    with ctx.db.session() as session, pytest.raises(DispatcherError, match="no campaign 999"):
        control.pause(session, 999)


@BOTH
def test_a_slice_claimed_when_the_campaign_is_cancelled_ends_cancelled_not_stuck(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 4, provider)
    campaign_id = campaign_of(ctx)
    outcomes: dict[str, Outcome] = {}
    [part] = claims.peek(ctx, sender, batch_ids, "task-1", outcomes)
    claimed = claims.claim(ctx, sender, part, batch_ids, "task-1", outcomes)
    with ctx.db.session() as session:  # cancelled while the slice waits for its slot
        assert control.cancel(session, campaign_id) == 0  # claimed: not closed yet
    grant = ctx.throttle.reserve(part.source, 4, part.rate)
    assert fanout._send_paced(ctx, sender, part, grant, claimed, outcomes) == {}
    assert requests_seen(simulator) == 0
    with ctx.db.session() as session:
        assert set(session.scalars(select(Message.status))) == {"cancelled"}
        assert set(session.scalars(select(Batch.state))) == {"skipped"}


def test_batches_handed_back_after_a_cancel_are_closed_by_the_sweep(
    ctx: SendContext,
    tmp_path: Path,
) -> None:
    personalised(ctx, tmp_path / "c", 3)
    campaign_id = campaign_of(ctx)
    with ctx.db.session() as session:
        control.cancel(session, campaign_id)
        # e.g. a request that met a gateway error after the cancel went back to pending
        session.execute(update(Batch).values(state="pending"))
        session.execute(update(Message).values(status="queued"))
    with ctx.db.session() as session:
        assert control.close_stranded(session) == [campaign_id]
    with ctx.db.session() as session:
        assert set(session.scalars(select(Message.status))) == {"cancelled"}
        assert control.close_stranded(session) == []
