"""A campaign's progress as a Flower task row (``dispatcher.operations.flower``).

Beat runs ``track_campaigns`` every few seconds; it queues one ``campaign_progress``
per running campaign, always under the campaign's own task id, so Flower keeps one row
per campaign. Each run reads the campaign's counts once and ends at once: while the
campaign runs it reports a ``PROGRESS`` (or ``PAUSED``) event whose result is the
counts and ends without a result of its own, so the row stays in that state; at the
end it returns the summary (``SUCCESS``) or raises the reason (``FAILURE``). The state
is in the database, so a worker restart loses nothing: the next turn shows it again.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from functools import cache

import redis
from celery import Task
from celery.exceptions import Ignore
from celery.utils.saferepr import saferepr

from dispatcher.errors import ConfigurationError
from dispatcher.operations import flower
from dispatcher.operations.progress import progress
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState
from workers import app
from workers.tasks import context

#: A campaign's refresh is not queued again while the last one is queued or running
#: (a backlog on the queue then holds one per campaign, not one per turn); a refresh
#: lost with its worker frees the campaign after this many seconds.
LEASE_SECONDS = 30
#: A campaign's refreshes read for at most this share of the time: the counts are a
#: few passes over the campaign's messages (9 statements; measured 35 ms for 10,000
#: people, 0.3 s for 100,000, 2 s for a million), so a big campaign's row is refreshed
#: less often (a million people: every ~20 s) rather than keeping a database core busy.
READ_SHARE = 0.1


class CampaignFailed(Exception):
    """A failed campaign's row: the reason, then the counts."""


@cache
def _leases(pid: int) -> redis.Redis:
    del pid  # part of the cache key only: a connection pool must not cross a fork
    url = get_settings().redis_url
    if url is None:
        raise ConfigurationError("REDIS_URL is not set")
    return redis.Redis.from_url(url)


def _lease(campaign_id: int) -> str:
    return f"dispatcher:progress-lease:{campaign_id}"


def _rest(campaign_id: int, took: float) -> None:
    """Free the campaign for the next turn, or hold its lease long enough to keep its
    reads within ``READ_SHARE``."""
    leases = _leases(os.getpid())
    if (pause := int(took / READ_SHARE)) >= 1:
        leases.set(_lease(campaign_id), 1, ex=pause)
    else:
        leases.delete(_lease(campaign_id))


# Not shown in Flower itself: its work is the rows it refreshes.
@app.task(name="workers.progress.track_campaigns", shared=False, send_events=False)
def track_campaigns() -> int:
    """Queue a refresh of each running (or just ended) campaign's row. Off in the
    embedded stack of ``dispatcher run``: no Flower watches its private broker."""
    if get_settings().embedded:
        return 0
    with context().db.session() as session:
        tracked = flower.to_track(session, datetime.now(UTC))
    leases = _leases(os.getpid())
    queued = 0
    for campaign in tracked:
        if not leases.set(_lease(campaign.campaign_id), 1, nx=True, ex=LEASE_SECONDS):
            continue
        campaign_progress.apply_async(
            kwargs={"campaign_id": campaign.campaign_id},
            task_id=flower.task_id(campaign.campaign_id),
            kwargsrepr=flower.label(campaign),
        )
        queued += 1
    return queued


@app.task(
    name="workers.progress.campaign_progress", shared=False, bind=True, throws=(CampaignFailed,)
)
def campaign_progress(self: Task, campaign_id: int) -> str:
    """Show the campaign's counts on its row; the final summary once it has ended."""
    started = time.monotonic()
    try:
        with context().db.session() as session:
            now = progress(session, campaign_id)
            held = flower.held(session, campaign_id)
    finally:
        _rest(campaign_id, time.monotonic() - started)
    if now is None:
        raise Ignore()
    shown = flower.snapshot(now, held)
    if now.state == CampaignState.FAILED:
        raise CampaignFailed(f"{flower.reason(now)} · {shown}")
    if now.state in flower.ENDED:
        return shown
    state = "task-paused" if now.state == CampaignState.PAUSED else "task-progress"
    self.send_event(state, result=saferepr(shown))
    raise Ignore()  # no task-succeeded: the row stays PROGRESS (or PAUSED)
