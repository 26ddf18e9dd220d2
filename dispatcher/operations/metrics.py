"""Prometheus ``/metrics`` of the webhook app, read from the shared state when scraped.

Sending happens in many worker processes on many hosts; counting inside each would
need prometheus_client's multiprocess mode and a shared directory. Everything shown
here already lives in the database (message statuses, failures, submit and report
times) or in Redis (the limiter, the broker's queues), so one collector reads it at
scrape time: every worker's work counts, and no restart loses a count.

Campaigns shown: those not finished, and those finished in the last day, so label sets
stay bounded. Phone numbers are never label values: senders appear masked.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import Session

from dispatcher.db import Campaign, Database, Message
from dispatcher.db.bulk import dialect_name
from dispatcher.errors import StorageError
from dispatcher.guardrails import pausing
from dispatcher.masking import mask
from dispatcher.operations import task_cpu
from dispatcher.operations.progress import RATE_WINDOW_SECONDS
from dispatcher.sending.throttle import Throttle
from dispatcher.status import FINAL_CAMPAIGN_STATES, CampaignState, MessageStatus

log = logging.getLogger(__name__)

#: Finished campaigns stay on show this long.
RECENT = timedelta(days=1)
#: The broker's queues (``celeryconfig.task_routes``) and its priority sub-queues
#: (kombu's Redis transport names them ``<queue>\x06\x16<step>``).
QUEUES = ("prepare", "send", "dlr")
PRIORITY_STEPS = (0, 3, 6, 9)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def render(db: Database, redis_url: str | None, refused: Mapping[str, int] | None = None) -> bytes:
    """The exposition text, for one scrape; ``refused`` counts the public port's
    refusals by reason (this process's, since it started)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(db, redis_url, refused or {}))
    return generate_latest(registry)


class _Collector(Collector):
    def __init__(self, db: Database, redis_url: str | None, refused: Mapping[str, int]) -> None:
        self.db = db
        self.redis_url = redis_url
        self.refused = refused

    def collect(self) -> Iterator[Metric]:
        if self.refused:
            refused = CounterMetricFamily(
                "dispatcher_webhook_refused",
                "Requests the public port refused, by reason (never stored)",
                labels=["reason"],
            )
            for reason, count in sorted(self.refused.items()):
                refused.add_metric([reason], count)
            yield refused
        try:
            with self.db.session() as session:
                yield from _campaign_metrics(session)
                yield paused_by_reason(session)
        except StorageError as exc:
            log.warning("metrics: database unavailable: %s", exc)
            yield _up("database", 0)
        else:
            yield _up("database", 1)
        if self.redis_url:
            client = redis.Redis.from_url(
                self.redis_url, socket_timeout=2, socket_connect_timeout=2
            )
            try:
                yield from _redis_metrics(client, self.db)
            except (RedisError, StorageError) as exc:
                log.warning("metrics: redis unavailable: %s", exc)
                yield _up("redis", 0)
            else:
                yield _up("redis", 1)
            finally:
                client.close()


def paused_by_reason(session: Session) -> Metric:
    """Campaigns paused by a guardrail now, by reason (``guardrails.pausing.REASONS``,
    each shown, 0 when none: a bounded label set an alert rule can watch)."""
    counts = dict.fromkeys(pausing.REASONS, 0)
    for paused_by in session.scalars(
        select(Campaign.paused_by).where(
            Campaign.state == CampaignState.PAUSED, Campaign.paused_by.is_not(None)
        )
    ):
        reason = str((paused_by or {}).get("reason", ""))
        if reason in counts:
            counts[reason] += 1
    gauge = GaugeMetricFamily(
        "dispatcher_campaign_paused",
        "Campaigns paused by a guardrail, by the signal that paused them",
        labels=["reason"],
    )
    for reason, count in counts.items():
        gauge.add_metric([reason], count)
    return gauge


def _up(part: str, value: int) -> Metric:
    gauge = GaugeMetricFamily(
        f"dispatcher_{part}_up", f"1 when the {part} answered this scrape", labels=[]
    )
    gauge.add_metric([], value)
    return gauge


def _shown(session: Session) -> list[Any]:
    since = datetime.now(UTC) - RECENT
    return list(
        session.execute(
            select(
                Campaign.id,
                Campaign.name,
                Campaign.source,
                Campaign.state,
                Campaign.rate_per_second,
            )
            .where(or_(Campaign.state.not_in(FINAL_CAMPAIGN_STATES), Campaign.finished_at >= since))
            .order_by(Campaign.id)
        )
    )


def sender_labels(sources: Iterable[str]) -> dict[str, str]:
    """Each sender's label: its masked number, with ``~2``, ``~3``... when two senders
    mask alike (so their series never merge)."""
    labels: dict[str, str] = {}
    taken: dict[str, int] = {}
    for source in sorted(set(sources)):
        masked = mask(source)
        taken[masked] = taken.get(masked, 0) + 1
        labels[source] = masked if taken[masked] == 1 else f"{masked}~{taken[masked]}"
    return labels


def _campaign_metrics(session: Session) -> Iterator[Metric]:
    campaigns = _shown(session)
    label_of = sender_labels(
        [c.source for c in campaigns] + list(session.scalars(select(Campaign.source).distinct()))
    )
    ids = [c.id for c in campaigns]
    by_id = {c.id: c for c in campaigns}
    state = GaugeMetricFamily(
        "dispatcher_campaign_info", "1 per campaign shown, with its name and state",
        labels=["campaign_id", "campaign", "sender", "state"],
    )  # fmt: skip
    messages = GaugeMetricFamily(
        "dispatcher_messages", "Messages by campaign, sender and status",
        labels=["campaign_id", "sender", "status"],
    )  # fmt: skip
    failures = GaugeMetricFamily(
        "dispatcher_message_failures",
        "Failed messages by LINK result code and WhatsApp error code ('' when none)",
        labels=["campaign_id", "sender", "result_code", "whatsapp_code"],
    )
    lag = GaugeMetricFamily(
        "dispatcher_dlr_lag_seconds",
        "Time from a message's submission to its first delivery report (sent), mean and "
        "max over the campaign's reported messages",
        labels=["campaign_id", "sender", "stat"],
    )
    for c in campaigns:
        state.add_metric([str(c.id), c.name, label_of[c.source], c.state], 1)
    if ids:
        for campaign_id, status, count in session.execute(
            select(Message.campaign_id, Message.status, func.count())
            .where(Message.campaign_id.in_(ids))
            .group_by(Message.campaign_id, Message.status)
        ):
            sender = label_of[by_id[campaign_id].source]
            messages.add_metric([str(campaign_id), sender, status], count)
        for campaign_id, result_code, whatsapp_code, count in session.execute(
            select(
                Message.campaign_id, Message.result_code, Message.whatsapp_error_code, func.count()
            )
            .where(
                Message.campaign_id.in_(ids),
                Message.status.in_((MessageStatus.FAILED, MessageStatus.EXPIRED)),
            )
            .group_by(Message.campaign_id, Message.result_code, Message.whatsapp_error_code)
        ):
            sender = label_of[by_id[campaign_id].source]
            labels = [str(campaign_id), sender, _code(result_code), _code(whatsapp_code)]
            failures.add_metric(labels, count)
        seconds = _seconds_between(session, Message.submitted_at, Message.sent_at)
        for campaign_id, mean, most in session.execute(
            select(Message.campaign_id, func.avg(seconds), func.max(seconds))
            .where(
                Message.campaign_id.in_(ids),
                Message.sent_at.is_not(None),
                Message.submitted_at.is_not(None),
            )
            .group_by(Message.campaign_id)
        ):
            sender = label_of[by_id[campaign_id].source]
            lag.add_metric([str(campaign_id), sender, "mean"], max(0.0, float(mean)))
            lag.add_metric([str(campaign_id), sender, "max"], max(0.0, float(most)))
    yield state
    yield messages
    yield failures
    yield lag
    yield _send_rates(session, campaigns, label_of)


def _send_rates(session: Session, campaigns: list[Any], label_of: dict[str, str]) -> Metric:
    """Messages submitted per second over the last RATE_WINDOW_SECONDS, per sender."""
    rate = GaugeMetricFamily(
        "dispatcher_send_rate_per_second",
        f"Messages submitted per second over the last {RATE_WINDOW_SECONDS} s, per sender",
        labels=["sender"],
    )
    active = [c.id for c in campaigns if c.state not in FINAL_CAMPAIGN_STATES]
    per_source: dict[str, int] = {label_of[c.source]: 0 for c in campaigns}
    if active:
        since = datetime.now(UTC) - timedelta(seconds=RATE_WINDOW_SECONDS)
        source_of = {c.id: label_of[c.source] for c in campaigns}
        for campaign_id, count in session.execute(
            select(Message.campaign_id, func.count())
            .where(Message.campaign_id.in_(active), Message.submitted_at >= since)
            .group_by(Message.campaign_id)
        ):
            per_source[source_of[campaign_id]] += count
    for sender, count in per_source.items():
        rate.add_metric([sender], count / RATE_WINDOW_SECONDS)
    return rate


def _redis_metrics(client: redis.Redis, db: Database) -> Iterator[Metric]:
    queues = GaugeMetricFamily(
        "dispatcher_queue_length", "Tasks waiting in the broker, per queue", labels=["queue"]
    )
    for queue in QUEUES:
        names = [queue] + [f"{queue}\x06\x16{step}" for step in PRIORITY_STEPS if step]
        queues.add_metric([queue], sum(int(client.llen(name)) for name in names))
    yield queues
    allowed = GaugeMetricFamily(
        "dispatcher_sender_rate_limit_per_second",
        "The rate the shared limiter allows a sender now: its level (or ceiling) times "
        "the factor left after Meta's rate-limit errors",
        labels=["sender"],
    )
    wait = GaugeMetricFamily(
        "dispatcher_limiter_wait_seconds",
        "How far ahead a sender's slots are handed out: the wait a new request would have",
        labels=["sender"],
    )
    throttle = Throttle(client)
    with db.session() as session:
        senders = session.execute(
            select(Campaign.source, func.max(Campaign.rate_per_second))
            .where(Campaign.state.not_in(FINAL_CAMPAIGN_STATES))
            .group_by(Campaign.source)
        ).all()
        label_of = sender_labels(session.scalars(select(Campaign.source).distinct()))
    for source, level in senders:
        if not level:
            continue
        label = [label_of[source]]
        allowed.add_metric(label, level * throttle.factor(source))
        wait.add_metric(label, throttle.backlog_seconds(source))
    yield allowed
    yield wait
    yield from _task_cpu(client)


def _task_cpu(client: redis.Redis) -> Iterator[Metric]:
    cpu = CounterMetricFamily(
        "dispatcher_worker_task_cpu_seconds",
        "CPU (user + system) of each kind of task in its own thread, every worker together",
        labels=["task"],
    )
    runs = CounterMetricFamily(
        "dispatcher_worker_tasks", "Tasks the workers ran, by kind", labels=["task"]
    )
    for task, (seconds, count) in task_cpu.totals(client).items():
        cpu.add_metric([task], seconds)
        runs.add_metric([task], count)
    yield cpu
    yield runs


def _code(value: int | None) -> str:
    return "" if value is None else str(value)


def _seconds_between(session: Session, start: Any, end: Any) -> ColumnElement[float]:
    if dialect_name(session) == "postgresql":
        return func.extract("epoch", end - start)  # type: ignore[return-value]
    return (func.julianday(end) - func.julianday(start)) * 86400.0  # type: ignore[no-any-return]
