"""Alerts to ``ALERT_URL``: written to an outbox in the same transaction as the change
they tell of, delivered later (signed, retried), so an alert never slows sending.

Each alert is a JSON POST whose ``text`` Slack and Teams incoming webhooks show as it
is; the other fields (``event``, ``campaign_id``, ``key``, ``at``, and the event's own
figures) are for programs. ``key`` is the alert's identity (``started:12``,
``digest:2026-12-06``): delivery is at least once (a worker lost between the receiver's
answer and its own commit posts again), so a receiver that must act once dedupes on it.

Signature (with ``ALERT_SECRET``), after Stripe's scheme::

    X-Dispatcher-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

A receiver recomputes the HMAC over the raw bytes it received (before any JSON
parsing), compares in constant time, and refuses a ``t`` too far from its own clock
(replays): ``verify`` below does exactly that.

Delivery (``deliver_due``, a periodic task every few seconds): due alerts oldest first,
a short timeout each, at most ``limit`` alerts and ``budget_seconds`` a run, and the run
ends at the first failure (a dead receiver costs one timeout a run, never a queue of
them). A failure (connection, timeout, non-2xx) is retried after ``RETRY_DELAYS`` (10 s
... 8 h, about 22 hours in all), then given up: ``next_attempt_at`` cleared, the reason
in ``last_error`` and the log.

Two workers at once: on PostgreSQL each claims its row with ``FOR UPDATE SKIP LOCKED``,
posts while holding it (at most the timeout) and marks it sent in that transaction. On
SQLite (one writer at a time: a transaction held through an HTTP request would stall
every other write of the process) a conditional UPDATE leases the row for
``LEASE_SECONDS`` first and commits, the POST runs outside any transaction, and its
outcome is written after; the loser of the lease moves to the next row.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import case, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.db import Alert, Campaign, Database, Message
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState, MessageStatus

log = logging.getLogger(__name__)

STARTED = "started"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
DIGEST = "digest"

SIGNATURE_HEADER = "X-Dispatcher-Signature"
#: Waits after the 1st, 2nd, ... failed attempt; after the last, the alert is given up.
RETRY_DELAYS = tuple(
    timedelta(seconds=s)
    for s in (10, 30, 120, 600, 1800, 3600, 2 * 3600, 4 * 3600, 6 * 3600, 8 * 3600)
)
TIMEOUT_SECONDS = 3.0
#: SQLite: how long a claimed alert is out of other runs' reach (well over a request).
LEASE_SECONDS = 60
ERROR_CHARS = 500


def enqueue(
    session: Session,
    kind: str,
    campaign_id: int | None,
    *,
    text: str,
    details: dict[str, Any] | None = None,
    key: str | None = None,
) -> None:
    """Queue one alert (nothing without ``ALERT_URL``); ``key`` makes it once only
    (default: one of each kind a campaign)."""
    if not get_settings().alert_url:
        return
    dedupe = (key or f"{kind}:{campaign_id}")[:160]
    if session.scalar(select(Alert.id).where(Alert.dedupe_key == dedupe)) is not None:
        return
    now = datetime.now(UTC)
    body = {"text": text, "event": kind, "campaign_id": campaign_id, "key": dedupe,
            "at": now.isoformat(), **(details or {})}  # fmt: skip
    session.add(Alert(kind=kind, campaign_id=campaign_id, dedupe_key=dedupe, body=body,
                      created_at=now, next_attempt_at=now))  # fmt: skip


# -- the campaign's events (called by ``campaigns.lifecycle`` in its transaction) ----------


def _name(session: Session, campaign_id: int) -> str:
    return session.scalar(select(Campaign.name).where(Campaign.id == campaign_id)) or ""


def started(session: Session, campaign_id: int) -> None:
    """The campaign is open for sending (its people are still being written: their
    figures come with the completion)."""
    if not get_settings().alert_url:
        return
    row = session.execute(
        select(Campaign.name, Campaign.source, Campaign.level, Campaign.rate_per_second).where(
            Campaign.id == campaign_id
        )
    ).one()
    rate = f" at {row.rate_per_second:,} msg/s" if row.rate_per_second else ""
    text = f"Campaign {campaign_id} ({row.name}) started sending from {row.source}{rate}."
    enqueue(session, STARTED, campaign_id, text=text, details={
        "name": row.name, "sender": row.source, "level": row.level,
        "rate_per_second": row.rate_per_second})  # fmt: skip


_DELIVERED = (MessageStatus.DELIVERED, MessageStatus.READ)
_SENT = (MessageStatus.SUBMITTED, MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ,
         MessageStatus.DELETED, MessageStatus.UNKNOWN)  # fmt: skip


def completed(session: Session, campaign_id: int) -> None:
    """The campaign completed: its outcomes in one aggregate over its messages."""
    if not get_settings().alert_url:
        return
    counts = dict(
        session.execute(
            select(Message.status, func.count())
            .where(Message.campaign_id == campaign_id)
            .group_by(Message.status)
        ).all()
    )
    figures = {
        "people": sum(counts.values()),
        "delivered": sum(counts.get(s, 0) for s in _DELIVERED),
        "read": counts.get(MessageStatus.READ, 0),
        "failed": counts.get(MessageStatus.FAILED, 0),
        "not_sent": sum(n for s, n in counts.items() if s not in _SENT and s != "failed"),
    }
    sent_not_confirmed = figures["people"] - figures["delivered"] - figures["failed"]
    sent_not_confirmed -= figures["not_sent"]
    text = (
        f"Campaign {campaign_id} ({_name(session, campaign_id)}) completed: "
        f"{figures['delivered']:,} delivered ({figures['read']:,} read), "
        f"{figures['failed']:,} failed, {figures['not_sent']:,} not sent"
        + (f", {sent_not_confirmed:,} sent without a delivery report" if sent_not_confirmed else "")
        + f" of {figures['people']:,} people."
    )
    enqueue(session, COMPLETED, campaign_id, text=text,
            details={"figures": figures, "by_status": counts})  # fmt: skip


def failed(session: Session, campaign_id: int, error: str) -> None:
    """The campaign failed (refused, or stopped half-way)."""
    if not get_settings().alert_url:
        return
    text = f"Campaign {campaign_id} ({_name(session, campaign_id)}) failed: {error[:300]}"
    enqueue(session, FAILED, campaign_id, text=text, details={"error": error[:ERROR_CHARS]})


# -- the daily digest -----------------------------------------------------------------------


def digest_if_due(db: Database, now: datetime | None = None) -> bool:
    """Queue the day's digest (once per UTC day, from ``ALERT_DIGEST_HOUR``): the last
    24 hours' campaigns and messages. True when this call queued it."""
    settings = get_settings()
    now = now or datetime.now(UTC)
    if not settings.alert_url or now.hour < settings.alert_digest_hour:
        return False
    key = f"{DIGEST}:{now.date().isoformat()}"
    try:
        with db.session() as session:
            if session.scalar(select(Alert.id).where(Alert.dedupe_key == key)) is not None:
                return False
            figures = _last_day(session, now)
            c, m = figures["campaigns"], figures["messages"]
            text = (
                f"Dispatcher, last 24 hours to {now:%Y-%m-%d %H:%M} UTC: campaigns "
                f"{c['started']:,} started, {c['completed']:,} completed, "
                f"{c['paused']:,} paused by a guardrail, {c['failed']:,} failed; messages "
                f"{m['sent']:,} sent, {m['delivered']:,} delivered, {m['failed']:,} failed."
            )
            enqueue(session, DIGEST, None, text=text, details=figures, key=key)
    except IntegrityError:  # another worker queued it meanwhile
        return False
    return True


def _last_day(session: Session, now: datetime) -> dict[str, Any]:
    since = now - timedelta(days=1)
    # Started and guardrail pauses have no column of their own: their alerts tell.
    told = dict(
        session.execute(
            select(Alert.kind, func.count())
            .where(Alert.created_at >= since, Alert.kind.in_((STARTED, PAUSED)))
            .group_by(Alert.kind)
        ).all()
    )
    ended = dict(
        session.execute(
            select(Campaign.state, func.count())
            .where(Campaign.finished_at >= since,
                   Campaign.state.in_((CampaignState.COMPLETED, CampaignState.FAILED)))
            .group_by(Campaign.state)
        ).all()
    )  # fmt: skip
    # Messages through the campaigns of the day (their timestamps have no index).
    active = select(Campaign.id).where(
        or_(
            Campaign.finished_at >= since,
            Campaign.created_at >= since,
            Campaign.state.in_((CampaignState.SENDING, CampaignState.PAUSED)),
        )
    )

    def within(column: Any) -> Any:
        return func.coalesce(func.sum(case((column >= since, 1), else_=0)), 0)

    sent, delivered, failures = session.execute(
        select(within(Message.submitted_at), within(Message.delivered_at),
               within(Message.failed_at))
        .where(Message.campaign_id.in_(active))
    ).one()  # fmt: skip
    return {
        "since": since.isoformat(),
        "campaigns": {
            "started": told.get(STARTED, 0),
            "completed": ended.get(CampaignState.COMPLETED, 0),
            "paused": told.get(PAUSED, 0),
            "failed": ended.get(CampaignState.FAILED, 0),
        },
        "messages": {"sent": int(sent), "delivered": int(delivered), "failed": int(failures)},
    }


# -- delivery -------------------------------------------------------------------------------


def sign(secret: str, body: bytes, at: int | None = None) -> str:
    """The ``X-Dispatcher-Signature`` value of ``body`` sent at ``at`` (unix seconds)."""
    t = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def verify(
    secret: str, header: str, body: bytes, *, tolerance_seconds: int = 300, now: int | None = None
) -> bool:
    """A receiver's check of an alert: ``header`` is ``X-Dispatcher-Signature`` as
    received, ``body`` the raw bytes received (before any JSON parsing)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        t = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs((int(time.time()) if now is None else now) - t) > tolerance_seconds:
        return False
    expected = sign(secret, body, t).split(",v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def masked_url(url: str) -> str:
    """The URL as logs show it: scheme and host only (its path or query may hold a
    token, as Slack's and Teams' webhook URLs do)."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}/…"


NONE_DUE, POSTED, REFUSED, TAKEN = "none due", "posted", "refused", "taken by another run"


@dataclass(frozen=True, slots=True)
class _Due:
    id: int
    key: str
    body: dict[str, Any]
    attempts: int


def deliver_due(
    db: Database,
    now: datetime | None = None,
    *,
    limit: int = 20,
    budget_seconds: float = 10.0,
    client: httpx.Client | None = None,
) -> int:
    """Post the alerts that are due (see the module's docstring); returns how many
    were delivered."""
    settings = get_settings()
    if not settings.alert_url:
        return 0
    url = settings.alert_url
    secret = settings.alert_secret.get_secret_value() if settings.alert_secret else None
    now = now or datetime.now(UTC)
    own = client is None
    http = client or httpx.Client(timeout=TIMEOUT_SECONDS, follow_redirects=False)
    postgres = db.engine.dialect.name == "postgresql"
    deadline = time.monotonic() + budget_seconds
    delivered = 0
    try:
        for _ in range(limit):
            if time.monotonic() > deadline:
                break
            one = _one_postgres if postgres else _one_sqlite
            outcome = one(db, http, url, secret, now)
            if outcome in (NONE_DUE, REFUSED):  # a failing receiver: the rest waits
                break
            delivered += outcome == POSTED
    finally:
        if own:
            http.close()
    return delivered


def _due(now: datetime) -> Any:
    return (
        select(Alert)
        .where(Alert.sent_at.is_(None), Alert.next_attempt_at <= now)
        .order_by(Alert.next_attempt_at, Alert.id)
        .limit(1)
    )


def _one_postgres(
    db: Database, http: httpx.Client, url: str, secret: str | None, now: datetime
) -> str:
    with db.session() as session:
        alert = session.scalars(_due(now).with_for_update(skip_locked=True)).first()
        if alert is None:
            return NONE_DUE
        due = _Due(alert.id, alert.dedupe_key, alert.body, alert.attempts)
        error = _post(http, url, secret, due)
        _record(session, due, error, now)
        return POSTED if error is None else REFUSED


def _one_sqlite(
    db: Database, http: httpx.Client, url: str, secret: str | None, now: datetime
) -> str:
    with db.session() as session:
        alert = session.scalars(_due(now)).first()
        if alert is None:
            return NONE_DUE
        due = _Due(alert.id, alert.dedupe_key, alert.body, alert.attempts)
        leased = session.execute(
            update(Alert)
            .where(Alert.id == alert.id, Alert.sent_at.is_(None),
                   Alert.next_attempt_at == alert.next_attempt_at)
            .values(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
        ).rowcount  # type: ignore[attr-defined]  # fmt: skip
    if not leased:
        return TAKEN
    error = _post(http, url, secret, due)
    with db.session() as session:
        _record(session, due, error, now)
    return POSTED if error is None else REFUSED


def _post(http: httpx.Client, url: str, secret: str | None, due: _Due) -> str | None:
    """One attempt; the error as stored and logged (never the URL), None on success."""
    body = json.dumps(due.body, separators=(",", ":"), default=str).encode()
    headers = {"Content-Type": "application/json", "X-Dispatcher-Alert": due.key}
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, body)
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return f"no answer within {TIMEOUT_SECONDS:g} s"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}".replace(url, masked_url(url))[:ERROR_CHARS]
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _record(session: Session, due: _Due, error: str | None, now: datetime) -> None:
    attempts = due.attempts + 1
    if error is None:
        session.execute(
            update(Alert)
            .where(Alert.id == due.id)
            .values(sent_at=datetime.now(UTC), attempts=attempts, next_attempt_at=None)
        )
        log.info("alert %s delivered (attempt %d)", due.key, attempts)
        return
    url = masked_url(get_settings().alert_url or "")
    if attempts > len(RETRY_DELAYS):
        session.execute(
            update(Alert)
            .where(Alert.id == due.id)
            .values(attempts=attempts, next_attempt_at=None,
                    last_error=f"given up after {attempts} attempts: {error}")
        )  # fmt: skip
        log.error("alert %s to %s given up after %d attempts: %s", due.key, url, attempts, error)
        return
    retry_at = now + RETRY_DELAYS[attempts - 1]
    session.execute(
        update(Alert)
        .where(Alert.id == due.id)
        .values(attempts=attempts, next_attempt_at=retry_at, last_error=error)
    )
    log.warning("alert %s to %s failed (attempt %d), again at %s: %s",
                due.key, url, attempts, retry_at.isoformat(timespec="seconds"), error)  # fmt: skip
