"""Alerts to ``ALERT_URL``: written to an outbox in the same transaction as the change
they tell of, delivered later (signed, retried), so an alert never slows sending."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.db import Alert
from dispatcher.settings import get_settings

STARTED = "started"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
DIGEST = "digest"


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
    dedupe = key or f"{kind}:{campaign_id}"
    if session.scalar(select(Alert.id).where(Alert.dedupe_key == dedupe)) is not None:
        return
    now = datetime.now(UTC)
    body = {"text": text, "event": kind, "campaign_id": campaign_id, "at": now.isoformat(),
            **(details or {})}  # fmt: skip
    session.add(Alert(kind=kind, campaign_id=campaign_id, dedupe_key=dedupe[:160], body=body,
                      created_at=now, next_attempt_at=now))  # fmt: skip
