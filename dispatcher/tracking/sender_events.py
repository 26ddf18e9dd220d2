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

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Message
from dispatcher.guardrails import health
from dispatcher.guardrails.pausing import Signal
from dispatcher.providers import parse_callback
from dispatcher.providers.base import SenderEvent
from dispatcher.settings import get_settings
from dispatcher.tracking.intake import settle

__all__ = ["TEMPLATE_CODES", "apply", "pause_at_once", "template_failures"]

#: The WhatsApp codes that say a campaign's template was paused or disabled.
TEMPLATE_CODES = frozenset(health.TEMPLATE_CODES)


def apply(session: Session, events: Sequence[tuple[int, SenderEvent]]) -> int:
    """Pause the sending campaigns each event stops (each with the stored report it came
    in); returns how many reports held a signal (``applied``; the others ``ignored``)."""
    now = datetime.now(UTC)
    kept, signals = _judged(session, events)
    if signals:
        health.pause_all(session, signals, now)
    settle(session, kept, {report_id for report_id, _ in events} - kept, now)
    return len(kept)


def _judged(
    session: Session, events: Sequence[tuple[int, SenderEvent]]
) -> tuple[set[int], list[tuple[int, Signal]]]:
    """The reports that held a signal, and the pauses they call for."""
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
    return kept, signals


def pause_at_once(session: Session, bodies: Sequence[tuple[str, bytes]]) -> list[int]:
    """The webhook app's own look at bodies that carry a guardrail's signal
    (``intake.Received.urgent``: rare), as they arrive: their campaigns are
    paused now, not when the applier reaches them behind a busy second's reports. The
    applier still applies them as usual (a second pause is a no-op). Returns the
    campaigns paused."""
    now = datetime.now(UTC)
    by_ref: dict[str, tuple[int, datetime]] = {}
    by_id: dict[str, tuple[int, datetime]] = {}
    events: list[tuple[int, SenderEvent]] = []
    for kind, body in bodies:
        try:
            callback = parse_callback(kind, body)
        except Exception:  # stored as it is: the applier says what is wrong with it
            continue
        for report in callback.statuses:
            code = report.whatsapp_error_code
            if code in TEMPLATE_CODES:
                found = (code, report.timestamp or now)
                if report.ref_id:
                    by_ref[report.ref_id] = found
                elif report.message_id:
                    by_id[report.message_id] = found
        events += [(0, event) for event in callback.sender_events]
    failed: dict[int, tuple[int, datetime]] = {}
    if by_ref:
        rows = session.execute(select(Batch.id, Batch.campaign_id).where(Batch.id.in_(by_ref)))
        failed |= {campaign_id: by_ref[batch_id] for batch_id, campaign_id in rows}
    if by_id:
        rows = session.execute(
            select(Message.link_message_id, Message.campaign_id).where(
                Message.link_message_id.in_(by_id)
            )
        )
        failed |= {campaign_id: by_id[str(wamid)] for wamid, campaign_id in rows}
    paused = template_failures(session, failed) if failed else []
    if events:
        _, signals = _judged(session, events)
        if signals:
            paused += health.pause_all(session, signals, now)
    return paused


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
