"""``send_at`` and recurring schedules (``dispatcher.campaigns.schedules``) with a fake clock, on
SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.campaigns import schedules
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, Schedule
from dispatcher.errors import ConfigurationError
from dispatcher.preparation.prepare import prepare_campaign
from tests.conftest import ROOT

NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "weekly"
    shutil.copytree(
        ROOT / "campaigns" / "example", target, ignore=shutil.ignore_patterns("reports")
    )
    return target


def with_send_at(folder: Path, when: datetime) -> Path:
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text() + f"send_at: {when.isoformat()}\n")
    return folder


def utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=moment.tzinfo or UTC)  # SQLite gives naive UTC back


def state_of(db: Database, campaign_id: int) -> str:
    with db.session() as session:
        return str(session.scalar(select(Campaign.state).where(Campaign.id == campaign_id)))


def test_a_campaign_with_send_at_ahead_waits_and_starts_once_when_due(
    db: Database, folder: Path, tmp_path: Path
) -> None:
    when = datetime.now(UTC) + timedelta(hours=2)
    campaign_id = create_campaign(db, load_campaign(with_send_at(folder, when)))
    assert state_of(db, campaign_id) == "scheduled"
    # A prepare task delivered early (say, by hand) does nothing.
    early = prepare_campaign(db, None, campaign_id, reports_dir=tmp_path)  # type: ignore[arg-type]
    assert early == []
    assert state_of(db, campaign_id) == "scheduled"
    queued: list[int] = []
    assert schedules.start_due(db, queued.append, when - timedelta(seconds=1)) == []
    assert schedules.start_due(db, queued.append, when) == [campaign_id]
    assert schedules.start_due(db, queued.append, when + timedelta(seconds=5)) == []
    assert queued == [campaign_id] and state_of(db, campaign_id) == "draft"


def test_send_at_in_the_past_starts_right_away(db: Database, folder: Path) -> None:
    past = datetime.now(UTC) - timedelta(minutes=5)
    campaign_id = create_campaign(db, load_campaign(with_send_at(folder, past)))
    assert state_of(db, campaign_id) == "draft"


def test_a_recurring_schedule_makes_one_campaign_per_run_in_its_time_zone(
    db: Database, folder: Path
) -> None:
    with db.session() as session:
        made = schedules.add(session, folder, "0 9 * * *", "Europe/Oslo", NOW)
        schedule_id = made.id
    first = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Oslo (UTC+1 in winter)
    queued: list[int] = []
    assert schedules.start_due(db, queued.append, first - timedelta(minutes=1)) == []
    [run] = schedules.start_due(db, queued.append, first)
    assert schedules.start_due(db, queued.append, first + timedelta(seconds=5)) == []  # once
    with db.session() as session:
        campaign = session.get(Campaign, run)
        schedule = session.get(Schedule, schedule_id)
        assert campaign is not None and schedule is not None
        assert campaign.name == "Spring sale 2026 (2026-11-23 08:00 UTC)"
        assert campaign.state == "draft"
        assert utc(schedule.next_run_at) == first + timedelta(days=1)
        assert schedule.last_campaign_id == run and schedule.last_error is None
    # The CSV is read afresh each run; a run that cannot start says why and the next
    # one is still planned.
    (folder / "recipients.csv").unlink()
    assert schedules.start_due(db, queued.append, first + timedelta(days=1)) == []
    with db.session() as session:
        schedule = session.get(Schedule, schedule_id)
        assert schedule is not None
        assert "recipients.csv" in (schedule.last_error or "")
        assert utc(schedule.next_run_at) == first + timedelta(days=2)
    assert queued == [run]


def test_cron_times_follow_daylight_saving_time() -> None:
    summer = schedules.next_run("0 9 * * *", "Europe/Oslo", datetime(2026, 6, 1, tzinfo=UTC))
    assert summer == datetime(2026, 6, 1, 7, 0, tzinfo=UTC)  # UTC+2 in summer


@pytest.mark.parametrize(
    ("cron", "zone", "message"),
    [("0 9 * *", "UTC", "cron expression"), ("0 9 * * *", "Mars/Olympus", "unknown time zone")],
)
def test_a_bad_cron_or_time_zone_is_refused_with_a_clear_error(
    cron: str, zone: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        schedules.next_run(cron, zone, NOW)
