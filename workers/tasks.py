"""Thin Celery tasks: every decision lives in ``dispatcher``; these only route work.

Task arguments are ids (never phone numbers or secrets): Flower shows them.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import mmap
import os
import signal
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import redis
from celery import Task
from celery.signals import (
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from kombu.exceptions import OperationalError
from redis.backoff import NoBackoff
from redis.retry import Retry
from sqlalchemy import func, select

from dispatcher.audience import phone
from dispatcher.campaigns import dropfolder, inputs, lifecycle, schedules
from dispatcher.db import Batch, Campaign, Database
from dispatcher.errors import ConfigurationError, StorageError
from dispatcher.guardrails import watch
from dispatcher.operations import alerts, control, task_cpu
from dispatcher.preparation.prepare import prepare_campaign as prepare
from dispatcher.providers import Level, provider_from_settings
from dispatcher.resending import planner as resend
from dispatcher.sending import batch as sending
from dispatcher.sending import batch_states, fanout
from dispatcher.sending import labels as tasklabels
from dispatcher.sending.throttle import Throttle
from dispatcher.sending.windows import release_held
from dispatcher.settings import get_settings
from dispatcher.tracking import apply as tracking
from workers import app

log = logging.getLogger(__name__)
# About 35 minutes in all before a batch's people are reported unsent.
RETRY_DELAYS_SECONDS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 900)


def retry_countdown(retries: int) -> float:
    """The wait before retry number ``retries + 1``. A worker holds a task through its
    countdown unacknowledged; were the countdown longer than the visibility timeout,
    Redis would hand the same task to a second worker meanwhile."""
    return min(RETRY_DELAYS_SECONDS[retries], get_settings().broker_visibility_timeout / 2)


@cache
def _context(pid: int) -> sending.SendContext:
    """Per-process resources (pools must not cross a fork), built on first use."""
    del pid  # part of the cache key only
    settings = get_settings()
    settings.require_production()
    if not (settings.database_url and settings.redis_url):
        raise ConfigurationError("workers need DATABASE_URL and REDIS_URL")
    return sending.SendContext(
        db=Database(settings.database_url),
        client=provider_from_settings(settings),
        throttle=Throttle(
            redis.Redis.from_url(settings.redis_url),
            margin_seconds=settings.limiter_margin_ms / 1000,
        ),
        event_report_gate=settings.link_event_report_gate,
    )


def context() -> sending.SendContext:
    return _context(os.getpid())


@app.task(name="workers.tasks.prepare_campaign", shared=False, bind=True)
def prepare_campaign(self: Task, campaign_id: int) -> int:
    """Load and batch a campaign, then hand each batch to the send queue."""
    ctx = context()
    settings = get_settings()

    def dispatch(batch_ids: list[str], *, fresh: bool = False) -> None:
        hand_out(ctx.db, campaign_id, batch_ids, stamp=not fresh)

    batch_ids = prepare(
        ctx.db, ctx.client, campaign_id, reports_dir=settings.reports_dir, dispatch=dispatch
    )
    log.info("campaign %s: %d batches queued", campaign_id, len(batch_ids))
    return len(batch_ids)


def hand_out(db: Database, campaign_id: int, batch_ids: list[str], *, stamp: bool = True) -> None:
    """Queue a campaign's batches for sending, in chunks (``send_batches``) at the
    campaign's broker priority, each labelled for Flower (``tasklabels``). ``stamp``:
    record when (batches a preparation has just written need not: their creation
    time stands for it)."""
    if not batch_ids:
        return
    priority = fanout.queue_priority(db, campaign_id)
    now = datetime.now(UTC)
    with db.session() as session:
        name, rate = session.execute(
            select(Campaign.name, Campaign.rate_per_second).where(Campaign.id == campaign_id)
        ).one()
        mean_batch = session.scalar(
            select(func.avg(Batch.size)).where(Batch.id.in_(batch_ids[: fanout.CHUNK_BATCHES]))
        )
        size = fanout.chunk_size(rate or Level.STANDARD.messages_per_second, mean_batch or 1)
        labels = []
        for chunk in fanout.chunks(batch_ids, size):
            # Stamped before the task exists: the lost-task net never sees a fresh one.
            if stamp:
                batch_states.handed_out(session, chunk, now)
            labels.append(tasklabels.send_label(session, campaign_id, chunk, name or ""))
    for chunk, label in zip(fanout.chunks(batch_ids, size), labels, strict=True):
        send_batches.apply_async(
            kwargs={"batch_ids": chunk, "campaign_id": campaign_id},
            priority=priority,
            kwargsrepr=label,
        )


@app.task(
    name="workers.tasks.send_batch", shared=False, bind=True, max_retries=len(RETRY_DELAYS_SECONDS)
)
def send_batch(self: Task, batch_id: str, campaign_id: int | None = None) -> str:
    """Send one batch; retried (later) only when nothing was sent."""
    ctx = context()
    outcome = sending.send_batch(ctx, batch_id, claimer=self.request.id or batch_id)
    if outcome is sending.Outcome.RETRY:
        if self.request.retries >= len(RETRY_DELAYS_SECONDS):
            sending.give_up(
                ctx.db, batch_id, f"LINK unreachable after {self.request.retries + 1} tries"
            )
            return "gave_up"
        raise self.retry(countdown=retry_countdown(self.request.retries))
    return outcome.value


_local = threading.local()
_fanouts: list[fanout.Fanout] = []  # this process's, closed when the worker stops


def _fanout() -> fanout.Fanout:
    """This thread's event loop and asyncio client (a loop runs in one thread, and must
    not cross a fork)."""
    mine: tuple[int, fanout.Fanout] | None = getattr(_local, "fanout", None)
    if mine is None or mine[0] != os.getpid():
        mine = _local.fanout = (os.getpid(), fanout.Fanout(context().client))
        _fanouts.append(mine[1])
        if os.getpid() not in _frozen_after_a_task:  # once a process, not a thread
            _frozen_after_a_task.add(os.getpid())
            _freeze_heap()  # what the first task built too: engine, client, loop
    return mine[1]


_frozen_after_a_task: set[int] = set()


@worker_init.connect
def _warm(**_: Any) -> None:
    """Every region's phone number plans, compiled once as the worker starts (before
    its pool forks, so the pool shares them), not region by region inside a first
    international list's preparation (0.2 s of CPU)."""
    phone.warm()


@worker_ready.connect
@worker_process_init.connect
def _freeze_heap(**_: Any) -> None:
    """Move what the process has built so far (modules, Celery, SQLAlchemy, pydantic:
    ~190,000 objects) out of the collector's reach. A full collection otherwise walks
    all of it, stopping every thread of the process for 100-150 ms on a busy machine,
    several times a minute while sending: each stop is a hole in the sender's paced
    stream that its slots cannot recover."""
    gc.collect()
    gc.freeze()


@worker_shutdown.connect
@worker_process_shutdown.connect
def _close_fanouts(**_: Any) -> None:
    """Close the pooled LINK connections when the tasks have stopped."""
    while _fanouts:
        with contextlib.suppress(Exception):  # shutting down: nothing left to tell
            _fanouts.pop().close()


# -- warm shutdown ------------------------------------------------------------------------
# A worker told to stop (SIGTERM or Ctrl+C to its main process) finishes the slice in
# flight of each running send task, and hands the rest of the task back to the broker
# as a new task at once (``_hand_back``): its batches are still pending, so whoever
# takes them claims each once. Tasks it had received but not started go back when its
# broker connection closes. The flag is one byte of memory the pool's processes share
# with the main process (they are forked after this module is imported).
_SHUTTING_DOWN = mmap.mmap(-1, 1)


class _PoolProcess:
    """This pool process's own stop: a SIGTERM that reached it (a signal to the whole
    process group) while a task runs; idle, it ends at once as before."""

    busy = False
    stopping = False


def stopping() -> bool:
    """Whether a running task should stop after its slice in flight."""
    return _SHUTTING_DOWN[0] == 1 or _PoolProcess.stopping


@worker_shutting_down.connect
def _shutting_down(**_: Any) -> None:
    _SHUTTING_DOWN[0] = 1


@worker_process_init.connect
def _stop_after_the_slice_on_sigterm(**_: Any) -> None:
    signal.signal(signal.SIGTERM, _pool_process_sigterm)


def _pool_process_sigterm(signum: int, _: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second one ends the process
    if not _PoolProcess.busy:
        os.kill(os.getpid(), signum)
    _PoolProcess.stopping = True


@task_prerun.connect
def _task_starts(**_: Any) -> None:
    _PoolProcess.busy = True
    _local.cpu_since = task_cpu.started()


@task_postrun.connect
def _task_ended(task: Task | None = None, **_: Any) -> None:
    _count_cpu(task)  # still busy: a SIGTERM to this process alone meanwhile is taken as below
    _PoolProcess.busy = False
    if _PoolProcess.stopping and _SHUTTING_DOWN[0] == 0:
        # Only this process was signalled: its task went back; it serves on.
        _PoolProcess.stopping = False
        signal.signal(signal.SIGTERM, _pool_process_sigterm)


def _count_cpu(task: Task | None) -> None:
    """Add the task's CPU to its kind's count (``task_cpu``): one round trip, never
    retried; a count lost is said once a process, and never stops a task."""
    since, _local.cpu_since = getattr(_local, "cpu_since", None), None
    if since is None or task is None:
        return
    try:
        client = _cpu_counter(os.getpid())
        if client is not None:
            task_cpu.record(client, task.name.rsplit(".", 1)[-1], since)
    except Exception as exc:  # Redis away, or its URL unusable
        log.log(logging.DEBUG if os.getpid() in _cpu_uncounted else logging.WARNING,
                "task CPU not counted: %s", exc)  # fmt: skip
        _cpu_uncounted.add(os.getpid())


_cpu_uncounted: set[int] = set()


@cache
def _cpu_counter(pid: int) -> redis.Redis | None:
    """This process's connection for ``task_cpu`` (None without Redis)."""
    del pid  # part of the cache key only: a connection must not cross a fork
    url = get_settings().redis_url
    if not url:
        return None
    return redis.Redis.from_url(
        url, socket_timeout=1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )


def _hand_back(campaign_id: int | None, batch_ids: list[str]) -> None:
    """Queue the batches a stopping send task did not reach (they are ``pending``)."""
    log.info("campaign %s: worker stopping, %d batches handed back", campaign_id, len(batch_ids))
    try:
        if campaign_id is not None:
            hand_out(context().db, campaign_id, batch_ids)
        else:
            send_batches.apply_async(kwargs={"batch_ids": batch_ids, "campaign_id": None})
    except (OperationalError, StorageError) as exc:
        log.warning(
            "campaign %s: %d batches could not be handed back (%s); resend_due queues them "
            "again after BROKER_VISIBILITY_TIMEOUT",
            campaign_id,
            len(batch_ids),
            exc,
        )


@app.task(name="workers.tasks.send_batches", shared=False, bind=True)
def send_batches(
    self: Task, batch_ids: list[str], campaign_id: int | None = None
) -> dict[str, int]:
    """Send a chunk of batches, many requests in flight at once (``dispatcher.sending.fanout``);
    the ones that found LINK unreachable go on alone, with ``send_batch``'s backoff."""
    outcomes = fanout.send_many(
        context(), _fanout(), batch_ids, claimer=self.request.id or batch_ids[0], stopping=stopping
    )
    rest = [batch_id for batch_id in batch_ids if batch_id not in outcomes]
    if rest:
        _hand_back(campaign_id, rest)
    for batch_id, outcome in outcomes.items():
        if outcome is sending.Outcome.RETRY:
            label = ""
            if campaign_id is not None:
                with contextlib.suppress(StorageError), context().db.session() as session:
                    label = tasklabels.send_label(session, campaign_id, [batch_id])
            try:
                send_batch.apply_async(
                    kwargs={"batch_id": batch_id, "campaign_id": campaign_id},
                    countdown=retry_countdown(0),
                    kwargsrepr=label or None,
                )
            except OperationalError as exc:  # the broker is down too
                log.warning(
                    "campaign %s: broker unreachable (%s); the batches left pending are "
                    "queued again by resend_due after BROKER_VISIBILITY_TIMEOUT",
                    campaign_id,
                    exc,
                )
                break
    counts = Counter(outcome.value for outcome in outcomes.values())
    if rest:
        counts["handed_back"] = len(rest)
    return dict(counts)


@app.task(name="workers.tasks.sweep_reports", shared=False)
def sweep_reports() -> int:
    """Apply reports that raced ahead of their messageIds; complete settled campaigns."""
    ctx = context()
    db = ctx.db
    with db.session() as session:
        applied = tracking.sweep(session)
        limited = tracking.rate_limited_senders(session)
    for sender, refused in limited.items():  # rate-limit errors: lower those senders' rate
        with contextlib.suppress(StorageError):
            ctx.throttle.penalise(sender, refused.messages, refused.level)
    with db.session() as session:
        lifecycle.complete_settled_sending(session)
    with db.session() as session:
        control.close_stranded(session)
    return applied


@app.task(name="workers.tasks.start_due", shared=False)
def start_due() -> int:
    """Queue the campaigns whose ``send_at`` has come and the runs of recurring
    schedules that are due (``dispatcher.campaigns.schedules``)."""
    started = schedules.start_due(
        context().db,
        lambda campaign_id: prepare_campaign.apply_async(kwargs={"campaign_id": campaign_id}),
        datetime.now(UTC),
    )
    return len(started)


@app.task(name="workers.tasks.scan_drop_folder", shared=False)
def scan_drop_folder() -> dict[str, int]:
    """Take complete campaign folders from the drop folder's inbox; file the ones whose
    campaign is prepared (``done/``) or refused (``failed/``). Off in the embedded
    mode: a folder dropped meanwhile would be sent by whoever runs an example."""
    settings = get_settings()
    if settings.embedded_broker or settings.embedded:
        return {"taken": 0, "filed": 0}
    drop = dropfolder.DropFolder(settings.drop_dir, settings.drop_settle_seconds)
    ctx = context()
    taken = dropfolder.take_new(
        drop, ctx.db, lambda campaign_id: prepare_campaign.apply_async(
            kwargs={"campaign_id": campaign_id}),
        repeat_guard=timedelta(days=settings.repeat_guard_days),
        only_noted=lambda _: ctx.client.simulator_instance() is not None,
    )  # fmt: skip
    filed = dropfolder.file_finished(drop, ctx.db)
    return {"taken": len(taken), "filed": len(filed)}


@app.task(name="workers.tasks.resend_due", shared=False)
def resend_due() -> int:
    """Plan retryable failures, expire what ran out of validity, send what is due
    (resends, and batches the messaging tier held for a day)."""
    db = context().db
    with db.session() as session:
        batch_ids = resend.run_due(session, resend_waits())
    with db.session() as session:  # held by the messaging tier, now due
        batch_ids += release_held(session)
    with db.session() as session:
        by_campaign = tasklabels.campaigns_of(session, batch_ids)
    for campaign_id, ids in by_campaign.items():
        hand_out(db, campaign_id, ids)
    return len(batch_ids)


@cache
def _guard_redis(pid: int) -> redis.Redis:
    del pid  # part of the cache key only: a connection pool must not cross a fork
    url = get_settings().redis_url
    if url is None:
        raise ConfigurationError("REDIS_URL is not set")
    return redis.Redis.from_url(url)


@app.task(name="workers.tasks.guard", shared=False)
def guard() -> int:
    """Judge the sending campaigns' canaries and failure classes (``guardrails.watch``);
    hand out the batches a canary judged good released."""
    ctx = context()
    released = watch.tick(ctx.db, ctx.client, _guard_redis(os.getpid()), datetime.now(UTC))
    for campaign_id, batch_ids in released.items():
        hand_out(ctx.db, campaign_id, batch_ids)
    return sum(len(ids) for ids in released.values())


@app.task(name="workers.tasks.purge_stored_files", shared=False)
def purge_stored_files() -> dict[str, int]:
    """Remove the stored inputs and reports of campaigns that ended more than
    ``RETENTION_DAYS`` ago (0: kept for ever), and contents no campaign uses."""
    days = get_settings().retention_days
    purged = inputs.purge(context().db, timedelta(days=days) if days else None)
    return {"campaigns": purged.campaigns, "files": purged.files, "contents": purged.contents}


@app.task(name="workers.tasks.deliver_alerts", shared=False)
def deliver_alerts() -> int:
    """Queue the daily digest when due and post the alerts that are due (a short
    timeout each, a bounded run: a dead ``ALERT_URL`` never holds a worker long)."""
    if not get_settings().alert_url:
        return 0
    db = context().db
    now = datetime.now(UTC)
    alerts.digest_if_due(db, now)
    return alerts.deliver_due(db, now)


def resend_waits() -> resend.Waits:
    settings = get_settings()
    min_delay = settings.resend_min_delay_seconds
    return resend.Waits(
        min_delay=None if min_delay is None else timedelta(seconds=min_delay),
        stale_submitting=timedelta(seconds=settings.stale_submitting_seconds),
        lost_task=timedelta(seconds=settings.broker_visibility_timeout),
    )
