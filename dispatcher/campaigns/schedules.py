"""Campaigns that start later: once at ``send_at``, or again and again on a cron schedule.

Both are started by one beat task (``workers.tasks.start_due``, every 5 s), so they
need no long-lived ETA tasks in the broker (Redis redelivers those after its
visibility timeout) and survive restarts: the database says what is due.

* A campaign whose spec has ``send_at`` ahead is stored ``scheduled``; when due it is
  moved to ``draft`` (a conditional UPDATE, so two beats start it once) and queued for
  preparation. Nothing about it is sent before.
* A recurring schedule (``dispatcher schedule add PATH --cron "0 9 * * MON"``) names
  a campaign folder, a cron expression and its time zone (DST handled by ``cronsim``).
  Each time it fires the folder is read afresh (a batch job may rewrite the CSV
  between runs) and becomes a campaign of its own, named after the run. A run that
  cannot start (a bad spec, a missing file) is recorded on the schedule and the next
  run is still planned.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns import lifecycle
from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import CampaignSpec, LoadedCampaign
from dispatcher.db import Campaign, Database, Schedule
from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.status import CampaignState

log = logging.getLogger(__name__)


def next_run(cron: str, timezone: str, after: datetime) -> datetime:
    """The first time after ``after`` the cron expression matches, in its time zone
    (returned in UTC)."""
    zone = _zone(timezone)
    try:
        moment = next(CronSim(cron, after.astimezone(zone)))
    except CronSimError as exc:
        raise ConfigurationError(f"cron expression {cron!r}: {exc}") from None
    return moment.astimezone(UTC)


def add(session: Session, path: Path, cron: str, timezone: str, now: datetime) -> Schedule:
    """Register a recurring campaign; the folder is checked now, and again at each run."""
    preflight(path)
    schedule = Schedule(
        path=str(path.resolve()),
        cron=cron,
        timezone=timezone,
        next_run_at=next_run(cron, timezone, now),
        enabled=True,
    )
    session.add(schedule)
    session.flush()
    return schedule


def start_due(db: Database, enqueue: Callable[[int], None], now: datetime) -> list[int]:
    """Queue every campaign whose time has come; returns their ids. One that cannot be
    queued (the broker is down) goes back to ``scheduled``: the next round retries."""
    started = []
    for campaign_id in _scheduled_campaigns(db, now) + _recurring_runs(db, now):
        try:
            enqueue(campaign_id)
        except Exception as exc:  # the broker: kombu's errors have no common base
            log.warning("campaign %s could not be queued, retried next round: %s",
                        campaign_id, exc)  # fmt: skip
            with db.session() as session:
                lifecycle.not_queued(session, campaign_id)
            continue
        started.append(campaign_id)
    return started


def _scheduled_campaigns(db: Database, now: datetime) -> list[int]:
    with db.session() as session:
        waiting = session.execute(
            select(Campaign.id, Campaign.spec).where(Campaign.state == CampaignState.SCHEDULED)
        ).all()
        due = []
        for campaign_id, spec in waiting:
            send_at = CampaignSpec.model_validate(spec).send_at
            if (send_at is None or send_at <= now) and lifecycle.due(session, campaign_id):
                due.append(campaign_id)
    return due


def _recurring_runs(db: Database, now: datetime) -> list[int]:
    started = []
    with db.session() as session:
        due = session.execute(
            select(Schedule.id, Schedule.next_run_at, Schedule.cron, Schedule.timezone).where(
                Schedule.enabled.is_(True), Schedule.next_run_at <= now
            )
        ).all()
    for schedule_id, run_at, cron, timezone in due:
        with db.session() as session:
            # Claim this run: plan the next one, on the condition nobody did it first.
            try:
                plan: dict[str, object] = {"next_run_at": next_run(cron, timezone, now)}
            except ConfigurationError as exc:  # edited into nonsense: stop, say why
                plan = {"enabled": False, "last_error": str(exc)}
            claimed = session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id, Schedule.next_run_at == run_at)
                .values(**plan)
            ).rowcount  # type: ignore[attr-defined]
            if not claimed or "enabled" in plan:
                continue
            path = session.scalar(select(Schedule.path).where(Schedule.id == schedule_id))
        campaign_id, error = _run_once(db, Path(path or ""), run_at)
        with db.session() as session:
            session.execute(
                update(Schedule)
                .where(Schedule.id == schedule_id)
                .values(last_campaign_id=campaign_id, last_error=error)
            )
        if campaign_id is not None:
            started.append(campaign_id)
        else:
            log.warning("schedule %s could not start its run: %s", schedule_id, error)
    return started


def _run_once(db: Database, path: Path, run_at: datetime) -> tuple[int | None, str | None]:
    try:
        loaded = preflight(path).loaded
    except DispatcherError as exc:
        return None, str(exc)
    except OSError as exc:  # a folder a batch job is rewriting: say so, try next run
        return None, f"{path}: {exc}"
    run_at = run_at.replace(tzinfo=run_at.tzinfo or UTC)  # SQLite gives naive UTC back
    stamp = f" ({run_at.astimezone(UTC):%Y-%m-%d %H:%M} UTC)"
    name = loaded.spec.name[: 200 - len(stamp)] + stamp
    spec = loaded.spec.model_copy(update={"name": name, "send_at": None})
    # Each run is meant to repeat the last (a batch job may not even change the CSV).
    rerun = LoadedCampaign(spec=spec, spec_path=loaded.spec_path)
    return create_campaign(db, rerun, again=True), None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigurationError(f"unknown time zone {name!r} (e.g. Europe/Oslo)") from None
