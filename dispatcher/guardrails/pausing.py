"""A guardrail pauses a campaign: one signal, its figure and its threshold, said the
same way in ``status``, the report, the metrics (``dispatcher_campaign_paused{reason}``),
the log and the alert.

The pause is the operator's own pause (workers stop within one slice); ``dispatcher
resume`` or ``cancel`` is the operator's call, and a resume judges signals afresh from
then on (``Campaign.guard_since``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.campaigns import lifecycle
from dispatcher.db import Campaign
from dispatcher.operations import alerts

log = logging.getLogger(__name__)

#: The reasons, as the metric's label names them.
REASONS = (
    "canary",
    "spam_rate_limit",
    "ecosystem",
    "undeliverable",
    "parameter_errors",
    "invalid_contacts",
    "template_paused",
    "template_disabled",
    "sender_blocked",
    "sender_limited",
    "quality",
)


@dataclass(frozen=True, slots=True)
class Signal:
    """What crossed which line: ``reason`` is one of ``REASONS``; ``figure`` and
    ``threshold`` are for people ("52% of 60 outcomes (31 x 131048)", "5% in 10m")."""

    reason: str
    figure: str
    threshold: str
    detail: str = ""

    def describe(self) -> str:
        text = f"{self.reason.replace('_', ' ')}: {self.figure} (threshold {self.threshold})"
        return f"{text}; {self.detail}" if self.detail else text

    def as_json(self, at: datetime) -> dict[str, Any]:
        return {"reason": self.reason, "figure": self.figure, "threshold": self.threshold,
                "detail": self.detail, "at": at.isoformat()}  # fmt: skip


def describe(paused_by: dict[str, Any]) -> str:
    """A stored ``Campaign.paused_by`` as one line."""
    return Signal(
        str(paused_by.get("reason", "")),
        str(paused_by.get("figure", "")),
        str(paused_by.get("threshold", "")),
        str(paused_by.get("detail", "")),
    ).describe()


def pause(session: Session, campaign_id: int, signal: Signal, now: datetime | None = None) -> bool:
    """Pause a sending campaign for ``signal``; False when it was not sending (paused
    or ended meanwhile: the first reason stays)."""
    at = now or datetime.now(UTC)
    if not lifecycle.guard_pause(session, campaign_id, signal.as_json(at)):
        return False
    name = session.scalar(select(Campaign.name).where(Campaign.id == campaign_id)) or ""
    log.warning("campaign %s paused by a guardrail: %s", campaign_id, signal.describe())
    alerts.enqueue(
        session,
        alerts.PAUSED,
        campaign_id,
        text=f"Campaign {campaign_id} ({name}) paused by a guardrail: {signal.describe()}. "
        f"`dispatcher resume {campaign_id}` or `dispatcher cancel {campaign_id}`.",
        details={"paused_by": signal.as_json(at)},
        key=f"paused:{campaign_id}:{at.isoformat()}",
    )
    return True
