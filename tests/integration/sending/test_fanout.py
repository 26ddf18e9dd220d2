"""Many batches in one task (``dispatcher.sending.fanout``), against the simulator over HTTP."""

from __future__ import annotations

import bisect
import collections
import dataclasses
import itertools
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text, update

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Batch, Database, Message
from dispatcher.db.timestamps import aware
from dispatcher.errors import StorageError
from dispatcher.providers.link.models import MessageRequest, MessageResponse
from dispatcher.sending import claims, fanout
from dispatcher.sending.batch import Outcome, SendContext
from dispatcher.sending.throttle import Grant, Throttle
from tests.conftest import BOTH
from tests.integration.conftest import PERSONAL_SPEC as SPEC
from tests.integration.conftest import personalised


@BOTH
def test_a_chunk_goes_out_concurrently_each_person_once_with_their_own_text(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 120, provider)
    assert len(batch_ids) == 120  # one request per person
    outcomes = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert set(outcomes.values()) == {Outcome.SUBMITTED}
    again = fanout.send_many(ctx, sender, batch_ids, "task-2")  # a duplicate task
    assert set(again.values()) == {Outcome.SKIPPED}
    stats = httpx.get(f"{simulator}/_simulator/stats").json()
    assert len(stats["destinations"]) == 120 and set(stats["destinations"].values()) == {1}
    with ctx.db.session() as session:
        rows = session.execute(select(Message.status, Message.link_message_id)).all()
    assert {status for status, _ in rows} == {"submitted"}
    assert len({link_id for _, link_id in rows}) == 120


@BOTH
def test_a_claimed_chunk_redelivered_after_a_crash_is_in_doubt_not_resent(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 5, provider)
    with ctx.db.session() as session:
        session.execute(
            update(Batch)
            .where(Batch.id.in_(batch_ids[:2]))
            .values(state="submitting", claimed_by="task-1")
        )
    outcomes = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert [outcomes[b] for b in batch_ids] == [Outcome.IN_DOUBT] * 2 + [Outcome.SUBMITTED] * 3
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 3


@BOTH
@pytest.mark.parametrize("simulator", [{"error_rate": 1.0}], indirect=True)
def test_a_failing_gateway_hands_the_chunk_back_untouched(
    ctx: SendContext, sender: fanout.Fanout, tmp_path: Path, provider: str
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 4, provider)
    outcomes = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert set(outcomes.values()) == {Outcome.RETRY}
    with ctx.db.session() as session:
        assert set(session.scalars(select(Batch.state))) == {"pending"}
        assert set(session.scalars(select(Message.attempts))) == {0}


def test_slices_are_a_tenth_of_a_second_of_the_level_or_one_batch() -> None:
    personal = [(f"p{i}", 1) for i in range(250)]
    assert [len(part) for part in fanout._slices(personal, 1000)] == [100, 100, 50]
    assert [len(part) for part in fanout._slices(personal[:20], 80)] == [8, 8, 4]
    batched = [(f"b{i}", 80) for i in range(3)]  # a batch is never split
    assert [len(part) for part in fanout._slices(batched, 80)] == [1, 1, 1]


@pytest.mark.parametrize(
    ("margin_ms", "step_us"), [(12, 4_000), (10, 5_000), (7, 1_000), (25, 5_000), (0, 0)]
)
def test_the_send_grid_s_step_divides_the_second_and_the_margin(
    margin_ms: int, step_us: int
) -> None:
    assert fanout.grid_step_us(margin_ms / 1000) == step_us


def test_requests_leave_on_the_limiter_s_grid_and_any_second_holds_the_level() -> None:
    """Two grants back to back at 1,000 a second, their starts off the grid, taken by
    processes whose clocks differ from the limiter's (two hosts): each request leaves at
    the first grid point of the limiter's clock at or after its moment, a few at a
    time. Late on the way by anything up to the margin, in any mix, what arrives within
    a second was granted within a second and the margin, as the limiter holds it."""
    margin = 0.012
    step_us = fanout.grid_step_us(margin)
    step = step_us / 1_000_000
    now = 1_790_000_000.0  # the limiter's clock: seconds since 1970
    first = Grant(at_seconds=now + 0.0012, waited_seconds=0.0, starts=500.0012, spacing=0.001)
    second = Grant(at_seconds=now + 1.0012, waited_seconds=0.0, starts=90.3, spacing=0.001)
    requests = _requests(1000)
    leaving = [t - (g.starts - g.at_seconds) for g in (first, second)  # the limiter's clock
               for t in fanout.dues(g, requests, step_us)]  # fmt: skip
    granted = [g.at_seconds + i * 0.001 for g in (first, second) for i in range(1000)]
    assert all(round((t - now) / step, 3).is_integer() for t in leaving)
    assert all(-1e-6 < t - g < step for t, g in zip(leaving, granted, strict=True))
    assert max(collections.Counter(round(t, 6) for t in leaving).values()) == 4  # one wake
    for lateness in (
        [margin, 0.0] * 1000,
        [0.0, margin] * 1000,
        [(i % 13) / 1000 for i in range(2000)],
    ):
        arriving = sorted(zip((t + late for t, late in zip(leaving, lateness, strict=True)),
                              granted, strict=True))  # fmt: skip
        times = [a for a, _ in arriving]
        for i, start in enumerate(times):
            inside = [g for _, g in arriving[i : bisect.bisect_left(times, start + 1.0 - 1e-6)]]
            assert max(inside) - min(inside) <= 1.0 + margin + 1e-6


@pytest.mark.parametrize(("priority", "expected"), [("HIGH", 0), ("NORMAL", 3), ("LOW", 6)])
def test_a_campaign_s_priority_orders_its_send_tasks_on_the_broker(
    db: Database, tmp_path: Path, priority: str, expected: int
) -> None:
    (tmp_path / "campaign.yaml").write_text(SPEC + f"priority: {priority}\n")
    (tmp_path / "people.csv").write_text("phone,first_name\n+4791000001,A\n")
    campaign_id = create_campaign(db, load_campaign(tmp_path))
    assert fanout.queue_priority(db, campaign_id) == expected


def _requests(count: int) -> list[MessageRequest]:
    return [
        MessageRequest(
            platform_id="P",
            platform_partner_id="1",
            ref_id=f"r{n}",
            source="+4790000000",
            destinations=[f"+4791{n:06d}"],
            messages=[{"type": "text", "text": {"body": "hi"}}],
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("simulator", [{"record_requests": True}], indirect=True)
def test_a_slice_leaves_as_the_limiter_paced_it(sender: fanout.Fanout, simulator: str) -> None:
    grant = Grant(at_seconds=0.0, waited_seconds=0.0, starts=time.monotonic(), spacing=0.05)
    requests = _requests(4)
    results = sender.send_all(requests, fanout.dues(grant, requests), late_after=0.5)
    assert all(isinstance(r, MessageResponse) for r in results)
    times = sorted(at for at, _ in httpx.get(f"{simulator}/_simulator/receipts").json())
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 4 and all(gap >= 0.04 for gap in gaps)  # not one burst


@pytest.mark.parametrize("simulator", [{"record_requests": True}], indirect=True)
def test_requests_that_missed_their_time_are_kept_back_not_sent_in_a_rush(
    sender: fanout.Fanout, simulator: str
) -> None:
    late = Grant(at_seconds=0.0, waited_seconds=0.0, starts=time.monotonic() - 1, spacing=0.01)
    requests = _requests(3)
    results = sender.send_all(requests, fanout.dues(late, requests), late_after=0.01)
    assert all(isinstance(r, fanout.Late) for r in results)
    assert httpx.get(f"{simulator}/_simulator/receipts").json() == []


@pytest.mark.parametrize("simulator", [{"record_requests": True}], indirect=True)
def test_only_the_requests_that_missed_their_moment_are_kept_back(
    sender: fanout.Fanout, simulator: str
) -> None:
    """A slice reached 250 ms late: its first two moments are gone, the rest still come."""
    grant = Grant(at_seconds=0.0, waited_seconds=0.0, starts=time.monotonic() - 0.25, spacing=0.2)
    requests = _requests(4)  # due 250 ms and 50 ms ago, then in 150 ms and 350 ms
    results = sender.send_all(requests, fanout.dues(grant, requests), late_after=0.02)
    assert [isinstance(r, fanout.Late) for r in results] == [True, True, False, False]
    assert all(isinstance(r, MessageResponse) for r in results[2:])
    assert len(httpx.get(f"{simulator}/_simulator/receipts").json()) == 2


class _LimiterDiesAfterTheClaim(Throttle):
    """The real limiter, except that the slice's slot comes too late and Redis is gone
    when a fresh one is asked for: the fault between claim and send."""

    calls = 0

    def reserve(
        self, sender: str, weight: int, rate_per_second: int, pieces: Sequence[int] = ()
    ) -> Grant:
        self.calls += 1
        if self.calls > 1:
            raise StorageError("rate limiter unavailable: connection refused")
        grant = super().reserve(sender, weight, rate_per_second, pieces)
        return dataclasses.replace(grant, starts=time.monotonic() - 1)  # reached late


def test_a_claimed_slice_with_no_slot_to_send_in_goes_back_to_pending_unsent(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 3)
    faulty = dataclasses.replace(ctx, throttle=_LimiterDiesAfterTheClaim(ctx.throttle._redis))
    outcomes = fanout.send_many(faulty, sender, batch_ids, "task-1")
    assert set(outcomes.values()) == {Outcome.RETRY}
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 0
    with ctx.db.session() as session:  # claimable by the retry, the try uncounted
        assert set(session.scalars(select(Batch.state))) == {"pending"}
        assert set(session.scalars(select(Message.attempts))) == {0}


@BOTH
def test_recording_answers_stores_ids_and_the_submission_but_never_moves_a_status_back(
    ctx: SendContext, tmp_path: Path, provider: str
) -> None:
    """The answers' ids and the submission (status, time, validity) land together; a
    report that overtook its answer keeps its status, a resend keeps its first validity.
    Two days of validity are 48 hours, whatever the database's time zone (across the
    change to summer time in Europe)."""
    batch_ids = personalised(ctx, tmp_path / "c", 3, provider)
    first_expiry = datetime(2030, 1, 1, tzinfo=UTC)
    with ctx.db.session() as session:
        ids = {
            b: session.scalar(select(Message.id).where(Message.batch_id == b)) for b in batch_ids
        }
        session.execute(update(Message).where(Message.id == ids[batch_ids[1]]).values(
            status="delivered"))  # fmt: skip
        session.execute(update(Message).where(Message.id == ids[batch_ids[2]]).values(
            expires_at=first_expiry))  # fmt: skip
        session.execute(update(Batch).values(state="submitting"))
    validity = timedelta(days=2)
    claimed = {
        b: claims.Claimed(_requests(1)[0], validity, [ids[b]], campaign_id=1) for b in batch_ids
    }
    answered = {b: MessageResponse(result_code=1000, message_ids=[f"L-{b}"]) for b in batch_ids}
    now = datetime(2025, 3, 29, 12, tzinfo=UTC)  # Europe's clocks go forward on the 30th
    with ctx.db.session() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SET LOCAL timezone = 'Europe/Berlin'"))
        claims.record(session, answered, claimed, now)  # type: ignore[arg-type]
    with ctx.db.session() as session:
        rows = {
            m.batch_id: m
            for m in session.scalars(select(Message).where(Message.batch_id.in_(batch_ids)))
        }
        states = set(session.scalars(select(Batch.state)))
    assert [rows[b].link_message_id for b in batch_ids] == [f"L-{b}" for b in batch_ids]
    assert [rows[b].status for b in batch_ids] == ["submitted", "delivered", "submitted"]
    assert {aware(rows[b].submitted_at) for b in batch_ids} == {now}
    assert [aware(rows[b].expires_at) for b in batch_ids] == [
        now + validity,
        now + validity,
        first_expiry,
    ]
    assert states == {"submitted"}


class _Clocked:
    """A slice sender that notes when each request would leave (the pacing alone)."""

    def __init__(self) -> None:
        self.left: dict[str, float] = {}

    async def send(self, request: MessageRequest) -> MessageResponse:
        self.left[request.ref_id or ""] = time.monotonic()
        return MessageResponse(result_code=1000, message_ids=["m"])

    async def aclose(self) -> None:
        pass


def test_no_paced_request_leaves_before_its_moment(ctx: SendContext) -> None:
    """The loop's timers may fire early (uvloop's count whole milliseconds from a clock
    read once a turn); a request that left early would count in a window it was not
    granted."""
    made = fanout.Fanout(ctx.client)
    clocked = made._sender = _Clocked()  # type: ignore[assignment]
    try:
        grant = Grant(at_seconds=0.0, waited_seconds=0.0, starts=time.monotonic() + 0.01,
                      spacing=0.00137)  # fmt: skip
        requests = _requests(300)
        moments = fanout.dues(grant, requests)
        made.send_all(requests, moments, late_after=None)
    finally:
        made.close()
    early = [r.ref_id for r, due in zip(requests, moments, strict=True)
             if clocked.left[r.ref_id or ""] < due]  # fmt: skip
    assert early == []
