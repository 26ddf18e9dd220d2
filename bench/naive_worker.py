"""The naive alternative measured by ``bench/throughput.py``: Celery's own ``rate_limit``.

A separate Celery app on the project's ``celeryconfig`` (same broker, queues and
routes) whose tasks carry the project's names, so the batches ``dispatcher run``
queues land here. Sending is the project's code (``dispatcher.sending.batch.send_batch``)
with the shared Redis limiter replaced by a no-op (:class:`NoThrottle`), and
``workers.tasks.send_batch`` carries ``rate_limit`` from ``NAIVE_RATE_LIMIT`` (tasks
per second, e.g. ``80/s``). Celery enforces that per worker process, so N workers
together send N times that. The other tasks (prepare, report sweep, resends) run the
project's own task bodies, also with the no-op limiter.

    NAIVE_RATE_LIMIT=80/s PYTHONPATH=bench celery -A naive_worker worker \\
        --queues prepare,send,dlr --pool threads --concurrency 8

(the same environment as a real worker: REDIS_URL, DATABASE_URL, LINK_*, ...).
"""

from __future__ import annotations

import dataclasses
import os
import time
from functools import cache

from celery import Celery, Task

import workers.tasks as project
from dispatcher.sending import batch as sending
from dispatcher.sending.throttle import Grant

RATE_LIMIT = os.environ.get("NAIVE_RATE_LIMIT", "80/s")


class NoThrottle:
    """Throttle-like, but every request may go at once: the only brake is Celery's."""

    def acquire(self, sender: str, weight: int, rate_per_second: int) -> Grant:
        return Grant(at_seconds=time.time(), waited_seconds=0.0)

    def penalise(self, sender: str, refused: int, level: int) -> float:
        return 1.0  # nothing adapts: Celery's rate_limit is fixed

    def factor(self, sender: str) -> float:
        return 1.0

    def reset(self, sender: str) -> None:
        return None


@cache
def _context(pid: int) -> sending.SendContext:
    """The project's per-process context with the limiter swapped out."""
    real = project._context(pid)
    return dataclasses.replace(real, throttle=NoThrottle())  # type: ignore[arg-type]


def context() -> sending.SendContext:
    return _context(os.getpid())


# The project's task bodies look ``context`` up at call time: they get the no-op too.
project.context = context

app = Celery("naive")
app.config_from_object("celeryconfig")


@app.task(
    name="workers.tasks.send_batch",
    bind=True,
    max_retries=len(project.RETRY_DELAYS_SECONDS),
    rate_limit=RATE_LIMIT,
)
def send_batch(self: Task, batch_id: str, campaign_id: int | None = None) -> str:
    """``workers.tasks.send_batch`` without the shared limiter, under Celery's rate_limit."""
    outcome = sending.send_batch(context(), batch_id, claimer=self.request.id or batch_id)
    if outcome is sending.Outcome.RETRY:
        delays = project.RETRY_DELAYS_SECONDS
        if self.request.retries >= len(delays):
            sending.give_up(
                context().db, batch_id, f"LINK unreachable after {self.request.retries + 1} tries"
            )
            return "gave_up"
        raise self.retry(countdown=delays[self.request.retries])
    return outcome.value


@app.task(name="workers.tasks.prepare_campaign")
def prepare_campaign(campaign_id: int) -> int:
    return int(project.prepare_campaign.run(campaign_id))


@app.task(name="workers.tasks.sweep_reports")
def sweep_reports() -> int:
    return int(project.sweep_reports.run())


@app.task(name="workers.tasks.resend_due")
def resend_due() -> int:
    return int(project.resend_due.run())


@app.task(name="workers.tasks.send_batches")
def send_batches(batch_ids: list[str], campaign_id: int | None = None) -> int:
    """The project hands batches out in chunks; here each becomes one rate-limited task,
    as a dispatcher built on Celery's ``rate_limit`` would queue them."""
    for batch_id in batch_ids:
        send_batch.apply_async(kwargs={"batch_id": batch_id, "campaign_id": campaign_id})
    return len(batch_ids)
