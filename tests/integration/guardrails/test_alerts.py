"""Alerts (``operations.alerts``) to a real HTTP receiver on loopback: queued with the
change they tell of, delivered once each, signed, retried with backoff, given up after
the last retry, and never in the sender's way when the receiver is dead."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from dispatcher.campaigns import lifecycle
from dispatcher.db import Alert, Campaign, Database, Message
from dispatcher.interfaces.terminal import ExitCode
from dispatcher.operations import alerts
from dispatcher.sending.batch import SendContext
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState
from tests.conftest import copy_campaign, free_port
from tests.e2e.conftest import run_campaign, stack
from tests.integration.conftest import make_batch, personalised
from tests.integration.guardrails.alert_receivers import Receiver, receiving, refused, silent

pytestmark = pytest.mark.integration
__all__ = ["stack"]  # the e2e stack fixture (webhook app, simulator, worker with beat)

SECRET = "alert-secret"


@pytest.fixture()
def alert_to(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """Points ``ALERT_URL`` (and the secret) at a URL for the test: ``alert_to(url)``."""

    def point(url: str | None, secret: str | None = SECRET) -> None:
        for name, value in (("ALERT_URL", url), ("ALERT_SECRET", secret)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield point
    get_settings.cache_clear()


@pytest.fixture()
def receiver(alert_to: object) -> Iterator[Receiver]:
    with receiving() as made:
        alert_to(made.url)  # type: ignore[operator]
        yield made


def queue(db: Database, *keys: str) -> None:
    with db.session() as session:
        for key in keys:
            alerts.enqueue(session, alerts.STARTED, None, text=f"alert {key}", key=key)


def row(db: Database, key: str) -> Alert:
    with db.session() as session:
        return session.scalars(select(Alert).where(Alert.dedupe_key == key)).one()


def test_alerts_arrive_once_each_signed_and_a_receiver_can_verify_them(
    db: Database, receiver: Receiver
) -> None:
    queue(db, "a", "b", "c")
    queue(db, "a")  # the same key again: still one alert
    assert alerts.deliver_due(db) == 3
    assert alerts.deliver_due(db) == 0  # nothing twice
    assert sorted(receiver.keys()) == ["a", "b", "c"]
    for received in receiver.received:
        signature = received.headers[alerts.SIGNATURE_HEADER]
        assert signature.startswith("t=") and ",v1=" in signature
        assert alerts.verify(SECRET, signature, received.raw)
        assert not alerts.verify("another secret", signature, received.raw)
        assert not alerts.verify(SECRET, signature, received.raw.replace(b"alert", b"alarm"))
        assert received.headers["X-Dispatcher-Alert"] == received.body["key"]
        assert received.body["text"].startswith("alert ")  # Slack's and Teams' field
    stale = receiver.received[0]
    late = int(time.time()) + 3600  # a replay an hour later is refused
    assert not alerts.verify(SECRET, stale.headers[alerts.SIGNATURE_HEADER], stale.raw, now=late)
    assert row(db, "a").sent_at is not None and row(db, "a").attempts == 1


def test_without_a_secret_alerts_go_unsigned_and_without_a_url_none_are_queued(
    db: Database, alert_to: object
) -> None:
    alert_to(None)  # type: ignore[operator]
    queue(db, "nowhere")
    with db.session() as session:
        assert session.scalar(select(Alert.id)) is None
    with receiving() as made:
        alert_to(made.url, None)  # type: ignore[operator]
        queue(db, "plain")
        assert alerts.deliver_due(db) == 1
        assert alerts.SIGNATURE_HEADER not in made.received[0].headers


def test_a_failing_receiver_gets_the_alert_again_after_the_backoff(
    db: Database, receiver: Receiver
) -> None:
    receiver.script[:] = [500, 503]  # fails twice, then takes it
    queue(db, "retried")
    start = datetime.now(UTC)
    assert alerts.deliver_due(db, start) == 0
    first = row(db, "retried")
    assert (first.attempts, first.sent_at) == (1, None)
    assert first.last_error is not None and first.last_error.startswith("HTTP 500")
    assert alerts.deliver_due(db, start + timedelta(seconds=9)) == 0  # not due yet
    assert len(receiver.received) == 1
    assert alerts.deliver_due(db, start + timedelta(seconds=10)) == 0  # 503
    assert alerts.deliver_due(db, start + timedelta(seconds=10 + 29)) == 0  # not due yet
    assert alerts.deliver_due(db, start + timedelta(seconds=10 + 30)) == 1
    assert receiver.keys() == ["retried"] * 3
    done = row(db, "retried")
    assert done.attempts == 3 and done.sent_at is not None and done.next_attempt_at is None
    assert alerts.deliver_due(db, start + timedelta(days=2)) == 0
    assert len(receiver.received) == 3


def test_an_alert_is_given_up_after_the_last_retry_and_the_log_hides_the_url_token(
    db: Database, receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script[:] = [500] * 100
    queue(db, "doomed")
    now = datetime.now(UTC)
    with caplog.at_level(logging.INFO, logger="dispatcher.operations.alerts"):
        for delay in (timedelta(0), *alerts.RETRY_DELAYS):
            now += delay
            assert alerts.deliver_due(db, now) == 0
    given_up = row(db, "doomed")
    assert given_up.attempts == len(alerts.RETRY_DELAYS) + 1 == 11
    assert given_up.next_attempt_at is None and given_up.sent_at is None
    assert given_up.last_error == "given up after 11 attempts: HTTP 500: ok"
    assert sum(alerts.RETRY_DELAYS, timedelta()) > timedelta(hours=20)  # about a day
    assert alerts.deliver_due(db, now + timedelta(days=30)) == 0
    assert len(receiver.received) == 11
    assert "given up after 11 attempts" in caplog.text
    assert "s3cr3t-token" not in caplog.text and "/hooks" not in caplog.text
    assert SECRET not in caplog.text


def test_two_runs_at_once_deliver_each_alert_once(db: Database, receiver: Receiver) -> None:
    """Two workers' runs over the same outbox (each its own engine, as two processes)."""
    keys = [f"k{n:02d}" for n in range(40)]
    queue(db, *keys)
    counts: list[int] = []
    second = Database(db.url)

    def run(database: Database) -> None:
        counts.append(alerts.deliver_due(database, limit=100, budget_seconds=60))

    threads = [threading.Thread(target=run, args=(d,)) for d in (db, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    second.dispose()
    assert sorted(receiver.keys()) == keys
    assert sum(counts) == len(keys)


@pytest.mark.parametrize("dead", ["silent", "refused"])
def test_a_dead_receiver_costs_a_run_at_most_one_timeout(
    db: Database, alert_to: object, dead: str
) -> None:
    with silent() as silent_url:
        alert_to(silent_url if dead == "silent" else refused())  # type: ignore[operator]
        queue(db, *(f"d{n}" for n in range(10)))
        began = time.monotonic()
        assert alerts.deliver_due(db) == 0
        took = time.monotonic() - began
    assert took < alerts.TIMEOUT_SECONDS + 1.5, took
    with db.session() as session:
        tried = session.scalars(select(Alert).where(Alert.attempts > 0)).all()
    assert len(tried) == 1  # the rest waits for the next run, untouched
    error = tried[0].last_error or ""
    assert error.startswith("no answer within") if dead == "silent" else "Connect" in error
    assert "/hooks" not in error


def test_the_campaign_events_are_queued_with_their_change_and_read_clearly(
    db: Database, ctx: SendContext, receiver: Receiver, tmp_path: Path
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 5)
    assert batch_ids
    with db.session() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
        assert lifecycle.fail(session, campaign_id, "the sender was refused (131031)")
        assert not lifecycle.fail(session, campaign_id, "twice")  # no second alert
    assert alerts.deliver_due(db) == 2
    started, failed = (r.body for r in receiver.received)
    assert started["event"] == "started" and started["campaign_id"] == campaign_id
    assert started["text"] == (
        f"Campaign {campaign_id} (Personal) started sending from +4790000000 at 80 msg/s."
    )
    assert failed["text"] == (
        f"Campaign {campaign_id} (Personal) failed: the sender was refused (131031)"
    )
    assert failed["error"] == "the sender was refused (131031)"


def test_completion_counts_outcomes_in_one_aggregate(db: Database, receiver: Receiver) -> None:
    make_batch(db, ["+4790000001", "+4790000002", "+4790000003", "+4790000004"])
    with db.session() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
        session.execute(update(Campaign).values(name="Spring sale", prepared_at=datetime.now(UTC)))
        outcomes = {"+4790000001": "delivered", "+4790000002": "read",
                    "+4790000003": "failed", "+4790000004": "expired"}  # fmt: skip
        for destination, status in outcomes.items():
            session.execute(
                update(Message).where(Message.destination == destination).values(status=status)
            )
        assert lifecycle.complete_if_settled(session, campaign_id)
    assert alerts.deliver_due(db) == 1
    body = receiver.received[0].body
    assert body["text"] == (
        f"Campaign {campaign_id} (Spring sale) completed: 2 delivered (1 read), 1 failed, "
        "1 not sent of 4 people."
    )
    assert body["figures"] == {"people": 4, "delivered": 2, "read": 1, "failed": 1, "not_sent": 1}


def test_the_daily_digest_comes_once_a_day_after_its_hour(
    db: Database, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALERT_DIGEST_HOUR", "8")
    get_settings.cache_clear()
    now = datetime.now(UTC).replace(hour=9, minute=0)
    make_batch(db, ["+4790000001", "+4790000002", "+4790000003"])
    with db.session() as session:
        campaign_id = session.scalars(select(Campaign.id)).one()
        hour_ago, long_ago = now - timedelta(hours=1), now - timedelta(days=3)
        session.execute(update(Message).values(submitted_at=hour_ago))
        session.execute(
            update(Message)
            .where(Message.destination == "+4790000001")
            .values(delivered_at=hour_ago, status="delivered")
        )
        session.execute(
            update(Message)
            .where(Message.destination == "+4790000002")
            .values(failed_at=hour_ago, status="failed")
        )
        session.execute(update(Message).where(Message.destination == "+4790000003")
                        .values(submitted_at=long_ago))  # fmt: skip
        session.execute(
            update(Campaign).values(state=CampaignState.COMPLETED, finished_at=hour_ago)
        )
        alerts.enqueue(session, alerts.STARTED, campaign_id, text="s")
    assert not alerts.digest_if_due(db, now.replace(hour=7, minute=59))  # before its hour
    assert alerts.digest_if_due(db, now)
    assert not alerts.digest_if_due(db, now + timedelta(hours=5))  # once a day
    assert alerts.deliver_due(db) == 2
    digest = next(r.body for r in receiver.received if r.body["event"] == "digest")
    assert digest["key"] == f"digest:{now.date().isoformat()}"
    assert digest["campaigns"] == {"started": 1, "completed": 1, "paused": 0, "failed": 0}
    assert digest["messages"] == {"sent": 2, "delivered": 1, "failed": 1}
    assert "1 completed" in digest["text"] and "2 sent, 1 delivered, 1 failed" in digest["text"]
    assert alerts.digest_if_due(db, now + timedelta(days=1))  # the next day's


# -- a real campaign through the simulator and a Celery worker (with beat) --------------------

ALERT_PORT = free_port()
ALERT_URL = f"http://127.0.0.1:{ALERT_PORT}/hooks/T000/B000/s3cr3t-token"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "stack",
    [{"ALERT_URL": ALERT_URL, "ALERT_SECRET": SECRET, "SIMULATOR_FAILURE_RATE": "0"}],
    indirect=True,
)
def test_a_campaign_run_by_a_worker_alerts_its_start_and_completion_once_each(
    stack: dict[str, str], tmp_path: Path
) -> None:
    with receiving(port=ALERT_PORT) as made:
        run = run_campaign(copy_campaign("example", tmp_path / "example"), stack)
        assert run.returncode == ExitCode.OK, run.stdout + run.stderr
        deadline = time.monotonic() + 30  # the periodic delivery runs every 5 s
        while "completed" not in str(made.keys()) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(6)  # another round of delivery: nothing comes twice
    campaign_id = made.received[0].body["campaign_id"]
    keys = made.keys()  # and the day's digest once, when the test runs after its hour
    assert [k for k in keys if not k.startswith("digest:")] == [
        f"started:{campaign_id}",
        f"completed:{campaign_id}",
    ]
    assert len(keys) - len(set(keys)) == 0
    for received in made.received:
        assert alerts.verify(SECRET, received.headers[alerts.SIGNATURE_HEADER], received.raw)
    completed = next(r.body for r in made.received if r.body["event"] == "completed")
    assert completed["text"] == (
        f"Campaign {campaign_id} (Spring sale 2026) completed: "
        f"{completed['figures']['delivered']} delivered "
        f"({completed['figures']['read']} read), 0 failed, 0 not sent of 190 people."
    )
    assert completed["figures"]["delivered"] == 190
