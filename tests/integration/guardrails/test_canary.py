"""The canary (``guardrails.canary``) and the failure-class signals
(``guardrails.signals``), judged by ``guardrails.watch.tick``: campaigns prepared and
sent through the LINK simulator over HTTP, their reports back through the webhook app,
on SQLite and PostgreSQL.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update
from typer.testing import CliRunner

from dispatcher.audience.recipients import normalise_msisdn
from dispatcher.campaigns import lifecycle
from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.guardrails import canary, pausing, watch
from dispatcher.interfaces.cli import app
from dispatcher.interfaces.terminal import ExitCode
from dispatcher.operations import control, flower, metrics, progress
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending.batch import Outcome
from dispatcher.status import BatchState, CampaignState, MessageStatus
from tests.conftest import ROOT, copy_campaign, dispatcher_command
from tests.e2e.conftest import run_campaign, stack
from tests.integration.resending.test_planner import Stack, start, wait_for

__all__ = ["stack"]  # the e2e stack fixture (webhook app, simulator, worker with beat)

#: Both databases (the e2e test below has its own).
DATABASES = pytest.mark.parametrize("db", ["sqlite", "postgresql"], indirect=True)

CANARY_SPEC = """
name: Canary rehearsal
sender: {source: "+4790000000", level: STANDARD}
message:
  type: template
  template:
    name: hello
    language: en
    components: [{type: body, parameters: [{type: text, text: "{name}"}]}]
recipients: people.csv
canary: {share: 2%, min_people: 10, wait: 10m}
"""
PLAIN_SPEC = CANARY_SPEC.replace("canary: {share: 2%, min_people: 10, wait: 10m}\n", "")
runner = CliRunner()
PEOPLE = [f"+47412{n:05d}" for n in range(100)]
CANARY = PEOPLE[:10]  # the first people: 2% of 100 is 2, at least 10


def campaign_id(db: Database) -> int:
    with db.session() as session:
        found = session.scalar(select(func.max(Campaign.id)))
    assert found is not None
    return found


def batches(db: Database, state: BatchState) -> list[str]:
    with db.session() as session:
        return list(
            session.scalars(select(Batch.id).where(Batch.state == state).order_by(Batch.seq))
        )


def by_status(db: Database) -> dict[str, int]:
    with db.session() as session:
        rows = session.execute(select(Message.status, func.count()).group_by(Message.status))
        return {status: count for status, count in rows}


def settled(db: Database, count: int) -> Callable[[], bool]:
    """``count`` messages have an outcome (read or failed)."""

    def check() -> bool:
        seen = by_status(db)
        return seen.get(MessageStatus.READ, 0) + seen.get(MessageStatus.FAILED, 0) >= count

    return check


def tick(stack: Stack) -> dict[int, list[str]]:
    return watch.tick(stack.db, None, stack.redis, datetime.now(UTC))


def stored(db: Database, cid: int) -> tuple[str, dict[str, Any] | None, dict[str, Any] | None]:
    with db.session() as session:
        row = session.execute(
            select(Campaign.state, Campaign.paused_by, Campaign.canary).where(Campaign.id == cid)
        ).one()
    return row.state, row.paused_by, row.canary


def canary_failing(stack_for: Callable[..., Stack], tmp_path: Path) -> tuple[Stack, int]:
    """A campaign of 100 whose canary's people all fail with 131048, its canary sent
    and reported; returns the stack and the campaign, judged (paused)."""
    stack = stack_for({key: [131048] for key in CANARY})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(stack.db)
    sent = batches(stack.db, BatchState.PENDING)
    assert len(sent) == 10 and len(batches(stack.db, BatchState.WAITING)) == 90
    assert set(stack.send(sent)) == {Outcome.SUBMITTED}
    wait_for(settled(stack.db, 10))
    assert tick(stack) == {}
    return stack, cid


@DATABASES
def test_a_canary_failing_with_131048_pauses_the_campaign_and_nobody_else_is_sent(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack, cid = canary_failing(stack_for, tmp_path)
    state, paused_by, plan = stored(db, cid)
    assert state == CampaignState.PAUSED
    assert paused_by is not None and plan is not None
    assert paused_by["reason"] == "canary"
    assert paused_by["figure"] == "100% of 10 canary messages failed with 131048 (spam rate limit)"
    assert paused_by["threshold"] == "5% of the canary's outcomes"
    assert paused_by["detail"].startswith("90 people held until `dispatcher resume`")
    assert "no outcome yet" not in paused_by["detail"]  # every outcome was in
    assert plan["verdict"] == "paused" and plan["failed"] == {"spam_rate_limit": 10}
    assert "canary: 100% of 10 canary messages failed" in pausing.describe(paused_by)
    # Nobody outside the canary was sent anything, and ticks after the pause hold it.
    assert tick(stack) == {}
    assert stack.received() == dict.fromkeys(CANARY, 1)
    assert by_status(db)[MessageStatus.QUEUED] == 90
    with db.session() as session:  # the rest can never complete the campaign
        assert not lifecycle.complete_if_settled(session, cid)


@DATABASES
def test_a_canary_pause_shows_in_status_the_report_and_the_metrics(
    cli_db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    _stack, cid = canary_failing(stack_for, tmp_path)
    shown = runner.invoke(app, ["status", str(cid)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert (
        "Paused by guardrail: canary: 100% of 10 canary messages failed with 131048 (spam "
        "rate limit) (threshold 5% of the canary's outcomes); 90 people held until "
        "`dispatcher resume` or `dispatcher cancel`" in text
    )
    assert "Canary: 10 people (2%, at least 10), 90 held behind it, wait 10m" in text
    assert "Canary outcomes: 10 seen, 0 not yet; failed by class: spam rate limit 10" in text
    assert "Canary verdict: paused: a failure class crossed its threshold" in text
    as_json = json.loads(runner.invoke(app, ["status", str(cid), "--json"]).output)[0]
    assert as_json["paused_by"].startswith("canary: 100% of 10")
    report = list(csv.DictReader(io.StringIO(runner.invoke(app, ["report", str(cid)]).output)))
    held = [row for row in report if row["status"] == MessageStatus.QUEUED]
    assert len(held) == 90
    assert {row["result_description"].split(" (")[0] for row in held} == {
        "not sent: campaign paused by a guardrail"
    }
    with cli_db.session() as session:  # Flower's row of the campaign
        shown_progress = progress.progress(session, cid)
        assert shown_progress is not None
        row = flower.snapshot(shown_progress, flower.held(session, cid))
    assert row.startswith("paused · by guardrail: canary: 100% of 10 canary messages failed")
    exposition = metrics.render(cli_db, None).decode()
    assert 'dispatcher_campaign_paused{reason="canary"} 1.0' in exposition
    assert 'dispatcher_campaign_paused{reason="spam_rate_limit"} 0.0' in exposition


@DATABASES
def test_resume_after_a_canary_pause_sends_the_rest_once(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack, cid = canary_failing(stack_for, tmp_path)
    with db.session() as session:
        resumed = control.resume(session, cid)
    assert len(resumed.batch_ids) == 90
    assert batches(db, BatchState.WAITING) == []
    assert set(stack.send(resumed.batch_ids)) == {Outcome.SUBMITTED}
    assert set(stack.send(resumed.batch_ids)) == {Outcome.SKIPPED}  # queued twice: once
    wait_for(settled(db, 100))
    assert stack.received() == dict.fromkeys(PEOPLE, 1)
    state, paused_by, plan = stored(db, cid)
    assert state == CampaignState.SENDING and paused_by is None
    assert plan is not None and plan["verdict"] == "resumed"
    assert tick(stack) == {}  # the canary is not judged again


@DATABASES
def test_a_resume_before_the_canary_is_judged_keeps_the_rest_waiting(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_for({})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(stack.db)
    canary_batches = batches(db, BatchState.PENDING)
    with db.session() as session:  # the operator's own pause, then resume
        control.pause(session, cid)
    with db.session() as session:
        resumed = control.resume(session, cid)
    assert resumed.batch_ids == canary_batches  # the canary's, not the people behind it
    assert len(batches(db, BatchState.WAITING)) == 90
    with db.session() as session:  # a resume of a campaign still sending: the same
        assert control.resume(session, cid).batch_ids == canary_batches
    assert len(batches(db, BatchState.WAITING)) == 90
    plan = stored(db, cid)[2]
    assert plan is not None and plan["verdict"] is None  # judged on by the ticks


@DATABASES
def test_cancel_after_a_canary_pause_closes_the_waiting_people_as_cancelled(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack, cid = canary_failing(stack_for, tmp_path)
    with db.session() as session:
        assert control.cancel(session, cid) == 90
    assert batches(db, BatchState.WAITING) == []
    assert len(batches(db, BatchState.SKIPPED)) == 90
    assert by_status(db) == {MessageStatus.FAILED: 10, MessageStatus.CANCELLED: 90}
    assert stored(db, cid)[0] == CampaignState.CANCELLED
    assert stack.received() == dict.fromkeys(CANARY, 1)


@DATABASES
def test_a_healthy_canary_releases_the_rest_and_the_campaign_completes(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_for({key: [0] for key in PEOPLE})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(db)
    assert set(stack.send(batches(db, BatchState.PENDING))) == {Outcome.SUBMITTED}
    wait_for(settled(db, 10))
    released = tick(stack)
    assert list(released) == [cid] and len(released[cid]) == 90
    assert tick(stack) == {}  # judged once
    assert set(stack.send(released[cid])) == {Outcome.SUBMITTED}
    wait_for(settled(db, 100))
    with db.session() as session:
        assert lifecycle.complete_if_settled(session, cid)
    assert stack.received() == dict.fromkeys(PEOPLE, 1)
    plan = stored(db, cid)[2]
    assert plan is not None and plan["verdict"] == "released"
    assert (plan["people"], plan["held"], plan["seen"], plan["unseen"]) == (10, 90, 10, 0)


@DATABASES
def test_a_preparation_resumed_after_it_lost_its_canary_plan_releases_the_waiting_rest(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    """A preparation that stopped after writing every batch but before storing the
    canary's plan: nobody is left to write on the rerun, so nothing judges the waiting
    batches; they go rather than keep the campaign from completing for ever."""
    stack = stack_for({key: [0] for key in PEOPLE})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(db)
    with db.session() as session:  # as the first run left it, stopped before the plan
        session.execute(
            update(Campaign).where(Campaign.id == cid).values(canary=None, prepared_at=None)
        )
    handed: list[str] = []
    stamped: list[str] = []  # handed out as written by an earlier run: stamped

    def dispatch(ids: list[str], *, fresh: bool = False) -> None:
        handed.extend(ids)
        if not fresh:
            stamped.extend(ids)

    prepare_campaign(db, stack.client, cid, reports_dir=tmp_path / "r", dispatch=dispatch)
    assert batches(db, BatchState.WAITING) == []
    assert len(set(handed)) == 100  # the 10 of the canary again (sent once) and the 90
    assert sorted(stamped) == sorted(handed)  # every one written by the first run
    assert set(stack.send(sorted(set(handed)))) == {Outcome.SUBMITTED}
    wait_for(settled(db, 100))
    with db.session() as session:
        assert lifecycle.complete_if_settled(session, cid)
    assert stack.received() == dict.fromkeys(PEOPLE, 1)


@DATABASES
def test_the_wait_passed_releases_the_rest_and_says_what_was_unseen(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    # Four of the canary are accepted and never reported (LINK still resending them).
    stack = stack_for({key: [-1] for key in PEOPLE[:4]})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(db)
    stack.send(batches(db, BatchState.PENDING))
    wait_for(settled(db, 6))
    assert tick(stack) == {}  # 6 of 10 seen, nothing crossed: waits for the rest
    with db.session() as session:
        plan = session.scalar(select(Campaign.canary).where(Campaign.id == cid))
        assert plan is not None and plan["verdict"] is None and plan["seen"] == 6
        until = datetime.now(UTC) - timedelta(seconds=1)
        session.execute(
            update(Campaign)
            .where(Campaign.id == cid)
            .values(canary={**plan, "until": until.isoformat()})
        )
    released = tick(stack)
    assert len(released[cid]) == 90
    judged = stored(db, cid)[2]
    assert judged is not None and judged["verdict"] == "released_after_wait"
    assert judged["unseen"] == 4 and "4 unseen after the wait" in judged["figure"]


@DATABASES
def test_the_wait_counts_from_when_the_canary_has_left(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    # The canary's batches not sent yet (say, held until a sending window opens) when
    # the wait would have ended: nothing is released unseen.
    stack = stack_for({key: [-1] for key in PEOPLE[:4]})
    start(stack, tmp_path, PEOPLE, CANARY_SPEC)
    cid = campaign_id(db)
    now = datetime.now(UTC)
    started, past = (
        (now - timedelta(minutes=11)).isoformat(),
        (now - timedelta(minutes=1)).isoformat(),
    )
    with db.session() as session:
        plan = session.scalar(select(Campaign.canary).where(Campaign.id == cid))
        assert plan is not None
        session.execute(update(Campaign).where(Campaign.id == cid).values(
            canary={**plan, "started_at": started, "until": past}))  # fmt: skip
    assert tick(stack) == {}
    assert len(batches(db, BatchState.WAITING)) == 90
    left = stored(db, cid)[2]
    assert left is not None and left.get("left_at") is None
    assert "its wait runs from when they have" in canary.describe(left, datetime.now(UTC))[-1]
    stack.send(batches(db, BatchState.PENDING))
    wait_for(settled(db, 6))
    assert tick(stack) == {}  # left now: a whole wait from here
    judged = stored(db, cid)[2]
    assert judged is not None and judged["verdict"] is None and judged["left_at"] is not None
    assert datetime.fromisoformat(judged["until"]) > datetime.now(UTC) + timedelta(minutes=9)


# -- a real campaign through the simulator and a Celery worker (with beat) --------------------


def _example_destinations() -> list[str]:
    """The example campaign's numbers, as the dispatcher writes them (E.164)."""
    with (ROOT / "campaigns" / "example" / "recipients.csv").open(encoding="utf-8") as handle:
        numbers = (normalise_msisdn(row["phone"], "NO") for row in csv.DictReader(handle))
        return [number for number in numbers if number]


@pytest.mark.e2e
@pytest.mark.parametrize(
    "stack",
    [
        {
            "SIMULATOR_FAILURE_RATE": "0",
            "SIMULATOR_SCRIPTED": json.dumps({d: [131048] for d in _example_destinations()}),
            "COLUMNS": "200",
        }
    ],
    indirect=True,
)
def test_a_worker_with_beat_pauses_a_campaign_after_its_failing_canary_and_sends_no_one_else(
    stack: dict[str, str], tmp_path: Path
) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + "canary: {share: 2%, min_people: 20, wait: 10m}\n")
    run = run_campaign(folder, stack, wait_seconds=90)
    assert run.returncode == ExitCode.UNFINISHED, run.stdout + run.stderr
    said = " ".join(run.stdout.split())
    assert (
        "Paused by guardrail: canary: 100% of 20 canary messages failed with 131048 (spam "
        "rate limit) (threshold 5% of the canary's outcomes); 170 people held" in said
    )
    assert "Paused by a guardrail: `dispatcher resume 1` sends the rest" in said
    shown = subprocess.run(
        dispatcher_command("status", "1"), env=stack, capture_output=True, text=True, timeout=60
    )
    print(shown.stdout)  # what a user sees (pytest -s)
    assert "Canary verdict: paused" in " ".join(shown.stdout.split())
    db = Database(stack["DATABASE_URL"])
    try:
        with db.session() as session:
            state = session.scalar(select(Campaign.state).where(Campaign.id == 1))
            sent = session.scalar(select(func.count()).where(Message.submitted_at.is_not(None)))
            waiting = session.scalar(select(func.count()).where(Batch.state == BatchState.WAITING))
    finally:
        db.dispose()
    assert state == CampaignState.PAUSED
    assert sent == 20 and waiting
