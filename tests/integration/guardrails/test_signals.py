"""Failure classes over their share in the rolling window (``guardrails.signals``),
judged by ``guardrails.watch.tick`` during the whole campaign: campaigns prepared and
sent through the LINK simulator over HTTP, their reports back through the webhook app,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dispatcher.db import Database
from dispatcher.operations import control
from dispatcher.sending.batch import Outcome
from dispatcher.status import BatchState, CampaignState
from tests.integration.guardrails.test_canary import (
    DATABASES,
    PLAIN_SPEC,
    batches,
    campaign_id,
    settled,
    stored,
    tick,
)
from tests.integration.resending.test_planner import Stack, start, wait_for

PEOPLE = [f"+47413{n:05d}" for n in range(120)]
# 8 of the first 60 fail with 131048: 13% of 60 outcomes, over 5% once 50 are in.
SPAMMED = PEOPLE[:60:8]


def half_sent(stack_for: Callable[..., Stack], tmp_path: Path) -> tuple[Stack, int, list[str]]:
    """A campaign of 120 without a canary, its first 60 sent and reported; returns the
    stack, the campaign and the batches not sent yet."""
    stack = stack_for({key: [131048] for key in SPAMMED})
    start(stack, tmp_path, PEOPLE, PLAIN_SPEC)
    cid = campaign_id(stack.db)
    pending = batches(stack.db, BatchState.PENDING)
    assert len(pending) == 120 and batches(stack.db, BatchState.WAITING) == []
    assert set(stack.send(pending[:60])) == {Outcome.SUBMITTED}
    wait_for(settled(stack.db, 60))
    return stack, cid, pending[60:]


@DATABASES
def test_a_failure_class_over_its_threshold_mid_campaign_pauses_it(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack, cid, rest = half_sent(stack_for, tmp_path)
    assert tick(stack) == {}
    state, paused_by, _ = stored(db, cid)
    assert state == CampaignState.PAUSED and paused_by is not None
    assert paused_by["reason"] == "spam_rate_limit"
    assert paused_by["figure"] == "13% of 60 outcomes in the last 10m (8 x 131048)"
    assert paused_by["threshold"] == "5% in 10m"
    # The rest is not sent while it is paused.
    assert Outcome.SUBMITTED not in set(stack.send(rest))
    assert len(stack.received()) == 60


@DATABASES
def test_below_min_outcomes_or_under_the_threshold_nothing_pauses(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUARDRAILS", '{"min_outcomes": 61}')
    from dispatcher.settings import get_settings

    get_settings.cache_clear()
    try:
        stack, cid, _ = half_sent(stack_for, tmp_path)
        assert tick(stack) == {}
        assert stored(db, cid)[0] == CampaignState.SENDING  # 60 outcomes: not judged yet
        monkeypatch.setenv("GUARDRAILS", '{"spam_rate_limit": "15%"}')
        get_settings.cache_clear()
        stack.redis.flushdb()  # the count of outcomes is due again at once
        assert tick(stack) == {}
        assert stored(db, cid)[0] == CampaignState.SENDING  # 13% is under 15%
    finally:
        get_settings.cache_clear()


@DATABASES
def test_after_a_resume_the_failures_before_it_are_not_judged_again(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack, cid, rest = half_sent(stack_for, tmp_path)
    tick(stack)
    assert stored(db, cid)[0] == CampaignState.PAUSED
    with db.session() as session:
        resumed = control.resume(session, cid)
    assert sorted(resumed.batch_ids) == sorted(rest)
    stack.redis.flushdb()
    assert tick(stack) == {}
    assert stored(db, cid)[0] == CampaignState.SENDING  # judged from the resume on
    assert set(stack.send(rest)) == {Outcome.SUBMITTED}
    wait_for(settled(db, 120))
    assert tick(stack) == {}
    state, paused_by, _ = stored(db, cid)
    assert state == CampaignState.SENDING and paused_by is None
    assert stack.received() == dict.fromkeys(PEOPLE, 1)


@DATABASES
def test_a_resume_of_a_campaign_still_sending_keeps_its_window(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    # ``dispatcher resume`` hands a sending campaign's batches out again: no verdict on
    # its failures, which are still judged.
    stack, cid, rest = half_sent(stack_for, tmp_path)
    with db.session() as session:
        assert sorted(control.resume(session, cid).batch_ids) == sorted(rest)
    assert tick(stack) == {}
    state, paused_by, _ = stored(db, cid)
    assert state == CampaignState.PAUSED and paused_by is not None
    assert paused_by["reason"] == "spam_rate_limit"
