"""What providers say about a sender, applied at once: the sending campaigns it stops
are paused (``guardrails.health`` judges, ``guardrails.pausing`` pauses).

Two sources:

* Meta's webhooks about the sender, read as ``providers.base.SenderEvent``: a template
  PAUSED or DISABLED pauses the Meta campaigns sending it (name, and language when the
  event gives one); a number FLAGGED (quality RED) pauses the campaigns of that number
  whose ``quality_floor`` it is below, whatever their provider (a number's rating is
  the number's); an account disabled, deleted, offboarded or restricted from
  business-initiated messaging pauses the Meta campaigns of that account (of the number
  the event names, when it names one). An event about another WhatsApp Business
  Account than ``META_WABA_ID`` (when set) is not ours to act on.
* failures with 132015 (template paused) or 132016 (template disabled), in status
  reports (``apply.apply_dlrs``) and send answers (``sending.batch``): the campaign they
  belong to is paused, unless the failure is older than the operator's last resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from dispatcher.guardrails import health
from dispatcher.guardrails.pausing import Signal
from dispatcher.providers.base import SenderEvent
from dispatcher.settings import get_settings
from dispatcher.tracking.intake import settle

__all__ = ["TEMPLATE_CODES", "apply", "template_failures"]

#: The WhatsApp codes that say a campaign's template was paused or disabled.
TEMPLATE_CODES = frozenset(health.TEMPLATE_CODES)


def apply(session: Session, events: Sequence[tuple[int, SenderEvent]]) -> int:
    """Pause the sending campaigns each event stops (each with the stored report it came
    in); returns how many reports held a signal (``applied``; the others ``ignored``)."""
    now = datetime.now(UTC)
    ours = get_settings().meta_waba_id
    campaigns = health.watched(session)
    kept: set[int] = set()
    signals: list[tuple[int, Signal]] = []
    for report_id, event in events:
        if ours and event.account and event.account != ours and event.kind != "quality":
            continue  # another account's templates and standing
        found = _signals(event, campaigns)
        if found is not None:
            kept.add(report_id)
            signals.extend(found)
    if signals:
        health.pause_all(session, signals, now)
    settle(session, kept, {report_id for report_id, _ in events} - kept, now)
    return len(kept)


def _signals(
    event: SenderEvent, campaigns: list[health.Watched]
) -> list[tuple[int, Signal]] | None:
    """The pauses an event calls for among ``campaigns``; None when it is no signal at
    all (an approval, a limit raised, a violation warning)."""
    judge = _judge(event)
    if judge is None:
        return None
    found = []
    for campaign in campaigns:
        signal = judge(campaign)
        if signal is not None:
            found.append((campaign.id, signal))
    return found


def _judge(event: SenderEvent) -> Callable[[health.Watched], Signal | None] | None:
    """How the event judges one campaign, or None when it is no signal."""
    how = f"Meta's {event.event} webhook"
    if event.detail and event.kind == "template":  # an account's reason is its ``blocked``
        how += f" ({event.detail})"
    if event.kind == "template":
        status = event.template_status or ""
        if status not in health.TEMPLATE_REASONS:
            return None
        return lambda c: health.template_signal(c, status, how) if _sends(c, event) else None
    if event.kind == "quality":
        quality = event.quality
        if quality is None:
            return None
        number = event.business_number
        return lambda c: (
            health.quality_signal(c, quality, how) if c.spec.sender.source == number else None
        )
    blocked = event.blocked
    if blocked is None:
        return None
    return lambda c: health.sender_signal(c, blocked, None, how) if _of(c, event) else None


def _sends(campaign: health.Watched, event: SenderEvent) -> bool:
    """The campaign sends the event's template through Meta."""
    template = campaign.template
    return (
        campaign.spec.sender.provider == "meta"
        and template is not None
        and template[0] == event.template_name
        and health.same_language(template[1], event.template_language)
    )


def _of(campaign: health.Watched, event: SenderEvent) -> bool:
    """The campaign sends through Meta from the number the event is about (every number
    of the account when it names none)."""
    sender = campaign.spec.sender
    return sender.provider == "meta" and event.business_number in (None, sender.source)


def template_failures(session: Session, failed: dict[int, tuple[int, datetime]]) -> list[int]:
    """Pause the campaigns whose messages failed with 132015/132016 (campaign id ->
    the code and when it failed); the campaigns paused now. A failure from before the
    operator's last resume is old news."""
    signals: list[tuple[int, Signal]] = []
    for campaign in health.watched(session, sorted(failed)):
        code, at = failed[campaign.id]
        since = campaign.guard_since
        if since is not None and _aware(at) <= _aware(since):
            continue
        status = health.TEMPLATE_CODES[code]
        signal = health.template_signal(campaign, status, f"WhatsApp error {code} on its messages")
        if signal is not None:
            signals.append((campaign.id, signal))
    return health.pause_all(session, signals) if signals else []


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)
