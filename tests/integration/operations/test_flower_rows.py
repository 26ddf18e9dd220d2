"""A campaign's Flower row (``operations.flower``, ``workers.progress``): which campaigns
are refreshed, what the row says, and how each campaign state ends the refresh."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.exceptions import Ignore
from sqlalchemy import update

from dispatcher.db import Campaign, Database
from dispatcher.operations import flower
from dispatcher.operations.progress import Progress
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState
from tests.integration.conftest import campaign
from workers import progress as rows


def set_state(db: Database, campaign_id: int, state: str, finished_ago: float | None) -> None:
    finished = None if finished_ago is None else datetime.now(UTC) - timedelta(seconds=finished_ago)
    with db.session() as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(state=state, finished_at=finished, error="LINK refused +4790000000")
        )


def test_running_campaigns_and_ones_just_ended_are_refreshed(db: Database, tmp_path: Path) -> None:
    cases = {
        "sending": (CampaignState.SENDING, None, True),
        "preparing": (CampaignState.PREPARING, None, True),
        "paused": (CampaignState.PAUSED, None, True),
        "just completed": (CampaignState.COMPLETED, 5, True),
        "just failed": (CampaignState.FAILED, 5, True),
        "completed long ago": (CampaignState.COMPLETED, 3600, False),
        "draft": (CampaignState.DRAFT, None, False),
        "scheduled": (CampaignState.SCHEDULED, None, False),
    }
    expected = []
    for index, (state, finished_ago, tracked) in enumerate(cases.values()):
        campaign_id = campaign(db, tmp_path / str(index), [f"+47912345{index:02d},"])
        set_state(db, campaign_id, state, finished_ago)
        if tracked:
            expected.append(campaign_id)
    with db.session() as session:
        found = flower.to_track(session, datetime.now(UTC))
    assert [t.campaign_id for t in found] == expected
    assert (
        flower.label(found[0]) == f"{{'campaign': 'Audience test', 'campaign_id': {expected[0]}}}"
    )


def progress_of(**counts: Any) -> Progress:
    values: dict[str, Any] = {
        "campaign_id": 7, "name": "Spring sale", "state": "sending", "error": None,
        "level": "STANDARD", "rate_per_second": 80, "loaded": 900, "rejected": 0,
        "duplicates": 0, "rejects_path": None, "messages": 900, "submitted": 480, "sent": 420,
        "delivered": 400, "read": 200, "failed": 5, "unsettled": 0, "awaiting_resend": 2,
        "expired": 0, "in_doubt_batches": 0, "by_status": {"queued": 420}, "failures": {},
        "send_rate": 78.5,
    }  # fmt: skip
    return Progress(**(values | counts))


def test_the_row_leads_with_delivered_read_and_failed() -> None:
    failures = {"112403 / WhatsApp 131049": 3, "112404": 1, "not sent": 1, "112406": 1}
    line = flower.snapshot(
        progress_of(failures=failures),
        flower.Held(100, datetime(2026, 5, 2, 8, 0, tzinfo=UTC)),
    )
    assert line == (
        "400 delivered, 200 read, 5 failed of 900 · 480 submitted, 420 sent"
        " · failed: 112403 / WhatsApp 131049 (3), 112404 (1), 112406 (1), other (1)"
        " · 2 waiting for resend · 100 held until 2026-05-02 08:00 UTC"
        " · 78.5/s of 80/s, ETA 5s"
    )
    assert flower.snapshot(
        progress_of(state="paused", awaiting_resend=0, by_status={}), flower.Held(0, None)
    ) == ("paused · 400 delivered, 200 read, 5 failed of 900 · 480 submitted, 420 sent"
          " · 78.5/s of 80/s")  # fmt: skip


class _Context:
    def __init__(self, db: Database) -> None:
        self.db = db


@pytest.fixture()
def worker_side(db: Database, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The tasks' database and lease store, and the events they send, recorded."""
    monkeypatch.setenv("REDIS_URL", redis_url)  # the Celery app's configuration reads it
    get_settings.cache_clear()
    client = redis.Redis.from_url(redis_url)
    events: list[tuple[str, dict[str, Any]]] = []
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(rows, "context", lambda: _Context(db))
    monkeypatch.setattr(rows, "_leases", lambda pid: client)
    monkeypatch.setattr(rows, "READ_SHARE", 1e9)  # every refresh counts as quick
    task = rows.campaign_progress._get_current_object()  # the proxy's task
    monkeypatch.setattr(
        type(task),
        "send_event",
        lambda self, type_, **fields: events.append((type_, fields)),
    )
    monkeypatch.setattr(task, "apply_async", lambda **options: queued.append(options))
    yield events, queued, client
    client.close()
    get_settings.cache_clear()


@pytest.mark.parametrize(
    ("state", "ending"),
    [
        (CampaignState.SENDING, "task-progress"),
        (CampaignState.PREPARING, "task-progress"),
        (CampaignState.PAUSED, "task-paused"),
        (CampaignState.COMPLETED, "SUCCESS"),
        (CampaignState.CANCELLED, "SUCCESS"),
        (CampaignState.FAILED, "FAILURE"),
    ],
)
def test_the_refresh_ends_as_the_campaign_stands(
    db: Database, tmp_path: Path, worker_side: Any, state: str, ending: str
) -> None:
    events, queued, client = worker_side
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,"])
    set_state(db, campaign_id, state, 1 if state in flower.ENDED else None)

    assert rows.track_campaigns() == 1
    assert rows.track_campaigns() == 0  # one refresh at a time per campaign
    assert queued == [
        {
            "kwargs": {"campaign_id": campaign_id},
            "task_id": f"campaign-{campaign_id}-progress",
            "kwargsrepr": f"{{'campaign': 'Audience test', 'campaign_id': {campaign_id}}}",
        }
    ]
    if ending.startswith("task-"):
        with pytest.raises(Ignore):  # no result of its own: the row keeps the event's state
            rows.campaign_progress(campaign_id=campaign_id)
        [(sent, fields)] = events
        assert sent == ending and "0 delivered, 0 read, 0 failed of 0" in fields["result"]
    elif ending == "SUCCESS":
        assert rows.campaign_progress(campaign_id=campaign_id).startswith(
            f"{state} · 0 delivered" if state != CampaignState.COMPLETED else "0 delivered"
        )
    else:
        with pytest.raises(rows.CampaignFailed, match=r"^LINK refused \+479•••••00 · failed · 0"):
            rows.campaign_progress(campaign_id=campaign_id)
    assert client.exists(f"dispatcher:progress-lease:{campaign_id}") == 0
    assert rows.track_campaigns() == 1  # the next turn refreshes it again


def test_a_slow_refresh_waits_before_the_next(
    db: Database, tmp_path: Path, worker_side: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A campaign whose counts take long to read is refreshed less often."""
    _, _, client = worker_side
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,"])
    set_state(db, campaign_id, CampaignState.SENDING, None)
    monkeypatch.setattr(rows, "READ_SHARE", 1e-6)
    assert rows.track_campaigns() == 1
    with pytest.raises(Ignore):
        rows.campaign_progress(campaign_id=campaign_id)
    assert client.ttl(f"dispatcher:progress-lease:{campaign_id}") > rows.LEASE_SECONDS
    assert rows.track_campaigns() == 0


def test_the_embedded_stack_keeps_no_rows(
    db: Database, tmp_path: Path, worker_side: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,"])
    set_state(db, campaign_id, CampaignState.SENDING, None)
    monkeypatch.setenv("DISPATCHER_EMBEDDED", "1")
    get_settings.cache_clear()
    assert rows.track_campaigns() == 0
