"""Resends and in-doubt batches, through the simulator, the webhook app and the database.

The simulator scripts each destination's fate per send (``SimulatorConfig.scripted``);
reports travel over real HTTP to the webhook app; windows are shortened to seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import select, update

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.db import Batch, Database, Message
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import MetaKeys
from dispatcher.interfaces.webhooks import create_app as create_webhooks
from dispatcher.operations import control
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.providers import Providers
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.resending import planner as resend
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from dispatcher.sending.throttle import Throttle
from dispatcher.simulator import SimulatorConfig, create_app
from tests.conftest import BOTH, through

NOW_WINDOWS = resend.Waits(min_delay=timedelta(0))
SPEC = """
name: Resend rehearsal
sender: {source: "+4790000000", level: STANDARD}
message:
  type: template
  template:
    name: hello
    language: en
    components: [{type: body, parameters: [{type: text, text: "{name}"}]}]
recipients: people.csv
resend:
  min_delay_minutes: 0
  transient: {max_attempts: 2, delay_minutes: 0}
  rate_limit: {max_attempts: 3, delay_minutes: 0}
  maintenance: {max_attempts: 2, delay_minutes: 0}
  ecosystem: {max_attempts: 2, delay_minutes: 0}
"""
TOKEN = "t0ken"
META_TOKEN, META_SECRET = "meta-t0ken", "app-secret"


class Stack:
    """Simulator + webhook app on loopback, and a send context pointing at them; the
    campaigns ``start`` writes send through ``provider`` (the simulator plays both)."""

    def __init__(
        self,
        db: Database,
        redis_url: str,
        scripted: dict[str, list[int]],
        provider: str = "link",
        **sim: Any,
    ):
        self.db = db
        self.provider = provider
        self.webhooks = ServerThread(
            create_webhooks(
                db, token=TOKEN, redis_url=redis_url, meta=MetaKeys(app_secret=META_SECRET)
            )
        ).start()
        gate = f"{self.webhooks.url}/webhooks/link/dlr?token={TOKEN}"
        config = SimulatorConfig(
            username="u", password="pw", gates={"g": gate}, scripted=scripted, dlr_delay_ms=1,
            meta_access_token=META_TOKEN, meta_app_secret=META_SECRET,
            meta_webhook_url=f"{self.webhooks.url}/webhooks/meta", **sim,
        )  # fmt: skip
        self.simulator = ServerThread(create_app(config)).start()
        credentials = LinkCredentials(
            base_url=self.simulator.url, username="u", password="pw", platform_id="P",
            platform_partner_id="1",
        )  # fmt: skip
        timeout = sim.get("response_delay_ms", 0) / 2000 or 5
        self.client = Providers(
            link=LinkClient(credentials, timeout_seconds=timeout),
            meta=MetaClient(
                MetaCredentials(self.simulator.url, META_TOKEN, "v23.0", config.meta_waba_id),
                timeout_seconds=timeout,
            ),
        )
        self.redis = redis.Redis.from_url(redis_url)
        self.ctx = SendContext(db, self.client, Throttle(self.redis), event_report_gate="g")

    def close(self) -> None:
        self.client.close()
        self.redis.close()
        self.simulator.stop()
        self.webhooks.stop()

    def received(self) -> dict[str, int]:
        return dict(httpx.get(f"{self.simulator.url}/_simulator/stats").json()["destinations"])

    def send(self, batch_ids: list[str]) -> list[Outcome]:
        return [send_batch(self.ctx, batch_id, f"t-{batch_id}") for batch_id in batch_ids]

    def resend_due(self) -> list[Outcome]:
        with self.db.session() as session:
            batch_ids = resend.run_due(session, NOW_WINDOWS)
        return self.send(batch_ids)


def start(stack: Stack, tmp_path: Path, phones: list[str], spec: str = SPEC) -> list[str]:
    (tmp_path / "campaign.yaml").write_text(through(stack.provider, spec))
    rows = "".join(f"{phone},P{n}\n" for n, phone in enumerate(phones))
    (tmp_path / "people.csv").write_text("phone,name\n" + rows)
    campaign_id = create_campaign(stack.db, preflight(tmp_path).loaded)
    return prepare_campaign(stack.db, stack.client, campaign_id, reports_dir=tmp_path / "r")


def statuses(db: Database) -> dict[str, tuple[str, int, str | None]]:
    with db.session() as session:
        rows = session.execute(
            select(Message.destination, Message.status, Message.attempts, Message.retry_class)
        ).all()
    return {r.destination: (r.status, r.attempts, r.retry_class) for r in rows}


def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def settled(db: Database, expected: dict[str, str]) -> Callable[[], bool]:
    return lambda: {d: s[0] for d, s in statuses(db).items() if d in expected} == expected


@BOTH
def test_each_retryable_code_is_resent_and_delivered_while_final_codes_stay_failed(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    scripted = {
        "+4741234501": [131000, 0],  # transient
        "+4741234502": [130429, 0],  # rate limit
        "+4741234503": [131057, 0],  # maintenance
        "+4741234504": [131049, 0],  # ecosystem
        "+4741234505": [131026],  # undeliverable: final
        "+4741234506": [0],
    }
    stack = stack_for(scripted)
    assert set(stack.send(start(stack, tmp_path, list(scripted)))) == {Outcome.SUBMITTED}
    first = dict.fromkeys(list(scripted)[:5], "failed") | {"+4741234506": "read"}
    wait_for(settled(db, first))
    assert set(stack.resend_due()) == {Outcome.SUBMITTED}
    wait_for(settled(db, dict.fromkeys(list(scripted)[:4], "read")))
    assert stack.resend_due() == []  # nothing left to resend
    assert statuses(db)["+4741234505"] == ("failed", 1, "final")
    assert stack.received() == {
        "+4741234501": 2,
        "+4741234502": 2,
        "+4741234503": 2,
        "+4741234504": 2,
        "+4741234505": 1,
        "+4741234506": 1,
    }


@BOTH
def test_max_attempts_are_honoured(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_for({"+4741234511": [131000, 131000, 131000]})
    stack.send(start(stack, tmp_path, ["+4741234511"]))
    wait_for(settled(db, {"+4741234511": "failed"}))
    stack.resend_due()
    wait_for(
        lambda: statuses(db)["+4741234511"][1] == 2 and statuses(db)["+4741234511"][0] == "failed"
    )
    stack.resend_due()
    assert statuses(db)["+4741234511"] == ("failed", 2, "final")  # transient: at most 2 sends
    assert stack.resend_due() == []
    assert stack.received() == {"+4741234511": 2}


def test_a_failure_past_its_validity_expires_instead_of_being_resent(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_for({"+4741234521": [131000, 0]})
    stack.send(start(stack, tmp_path, ["+4741234521"]))
    wait_for(settled(db, {"+4741234521": "failed"}))
    with db.session() as session:
        session.execute(update(Message).values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert stack.resend_due() == []
    assert statuses(db)["+4741234521"][0] in ("failed", "expired")
    assert stack.received() == {"+4741234521": 1}


def test_a_resend_still_queued_past_its_validity_expires_and_a_first_send_waits(
    db: Database,
) -> None:
    now = datetime.now(UTC)
    past = now - timedelta(seconds=1)
    rows = {  # destination: (previous messageId, validity)
        "+4741234525": ("link-1", past),  # a resend waiting in its new batch
        "+4741234526": (None, None),  # never submitted: no validity yet
        "+4741234527": ("link-2", now + timedelta(hours=1)),  # a resend still valid
    }
    with db.session() as session:
        for line, (destination, (previous, expires_at)) in enumerate(rows.items(), 1):
            session.add(
                Message(campaign_id=1, identity_key=destination, destination=destination,
                        source_line=line, params={}, status="queued",
                        previous_link_message_id=previous, expires_at=expires_at)
            )  # fmt: skip
    with db.session() as session:
        assert resend.expire(session, now) == 1
    assert {d: s for d, (s, *_) in statuses(db).items()} == {
        "+4741234525": "expired",
        "+4741234526": "queued",
        "+4741234527": "queued",
    }


@BOTH
def test_an_unanswered_request_is_settled_by_reports_and_only_silent_people_are_resent_once(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    # The simulator answers after the client gave up: the batch is in doubt.
    stack = stack_for({"+4741234531": [0], "+4741234532": [-1, 0]}, response_delay_ms=1200)
    outcomes = stack.send(start(stack, tmp_path, ["+4741234531", "+4741234532"]))
    assert set(outcomes) == {Outcome.IN_DOUBT}
    wait_for(settled(db, {"+4741234531": "read"}))  # settled by its report's destination
    assert statuses(db)["+4741234532"][0] == "queued"  # no report: still in doubt
    stack.resend_due()
    wait_for(settled(db, {"+4741234532": "read"}))
    assert stack.received() == {"+4741234531": 1, "+4741234532": 2}
    with db.session() as session:
        note = session.scalar(
            select(Message.result_description).where(Message.destination == "+4741234532")
        )
    assert note == resend.IN_DOUBT_NOTE
    assert stack.resend_due() == []


@BOTH
def test_a_rate_limit_report_slows_the_sender_and_the_message_is_resent_not_lost(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    scripted = {"+4741234541": [130429, 0], "+4741234542": [0]}
    stack = stack_for(scripted)
    stack.send(start(stack, tmp_path, list(scripted)))
    wait_for(settled(db, {"+4741234541": "failed", "+4741234542": "read"}))
    # Slowed by the share refused and a step, recovering by 1 % a second since
    wait_for(lambda: stack.ctx.throttle.factor("+4790000000") < 1.0)
    assert set(stack.resend_due()) == {Outcome.SUBMITTED}
    wait_for(settled(db, {"+4741234541": "read"}))
    assert stack.received() == {"+4741234541": 2, "+4741234542": 1}


def test_pending_batches_whose_task_was_lost_are_queued_again_after_the_window(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    """A send task gone without Celery bringing it back leaves its batches pending;
    they are queued again once the campaign has stalled for the window."""
    stack = stack_for({})
    batch_ids = start(stack, tmp_path, ["+4741234551", "+4741234552", "+4741234553"])
    assert len(batch_ids) == 3
    windows = resend.Waits(min_delay=timedelta(0), lost_task=timedelta(minutes=5))
    now = datetime.now(UTC)
    later = now + timedelta(minutes=6)
    with db.session() as session:
        assert resend.lost_batches(session, windows, now) == []  # their tasks may still run
        assert resend.lost_batches(session, windows, later) == batch_ids
    stack.send(batch_ids[:1])
    with db.session() as session:
        assert resend.lost_batches(session, windows, later) == batch_ids[1:]
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_ids[0]))
        assert campaign_id is not None
        control.pause(session, campaign_id)
    with db.session() as session:  # a paused campaign's batches wait for resume
        assert resend.lost_batches(session, windows, later) == []
        control.resume(session, campaign_id)
    with db.session() as session:
        assert resend.run_due(session, windows) == []  # run_due uses the real clock
        session.execute(
            update(Batch)
            .where(Batch.id.in_(batch_ids))
            .values(handed_out_at=now - timedelta(minutes=10))
        )
    with db.session() as session:  # the campaign claimed a batch just now: still moving
        assert resend.run_due(session, windows) == []
        session.execute(
            update(Batch)
            .where(Batch.id == batch_ids[0])
            .values(submitting_at=now - timedelta(minutes=10))
        )
    with db.session() as session:  # stalled for the whole window: its tasks are gone
        assert resend.run_due(session, windows) == batch_ids[1:]
    assert stack.send(batch_ids[1:]) == [Outcome.SUBMITTED] * 2
    assert stack.received() == dict.fromkeys(["+4741234551", "+4741234552", "+4741234553"], 1)
