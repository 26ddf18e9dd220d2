"""What Flower shows of a campaign: one task row per campaign whose state and result
are the campaign's progress (``workers.progress``).

The campaign's state lives in the database; the row is a view of it, refreshed by a
short task every few seconds while the campaign runs (and for a minute after it ends,
while the last reports arrive). Everything here only reads, and carries no phone number:
Flower shows it to whoever may log in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign
from dispatcher.masking import mask
from dispatcher.operations.progress import Progress
from dispatcher.status import BatchState, CampaignState

#: States in which a campaign's row is refreshed.
RUNNING = (CampaignState.PREPARING, CampaignState.SENDING, CampaignState.PAUSED)
#: States whose row is final (SUCCESS, or FAILURE for ``failed``).
ENDED = (CampaignState.COMPLETED, CampaignState.CANCELLED, CampaignState.FAILED)
#: An ended campaign's row is still refreshed this long: reads and late reports move it.
FOLLOW_UP = timedelta(seconds=60)
#: How many failure reasons the row lists (most frequent first); the rest are summed.
FAILURE_REASONS = 3


@dataclass(frozen=True, slots=True)
class Tracked:
    campaign_id: int
    name: str


def to_track(session: Session, now: datetime) -> list[Tracked]:
    """The campaigns whose row is due a refresh: running ones, and ones that ended
    within ``FOLLOW_UP``. One indexed query (``campaigns.state``)."""
    rows = session.execute(
        select(Campaign.id, Campaign.name)
        .where(
            or_(
                Campaign.state.in_(RUNNING),
                Campaign.state.in_(ENDED) & (Campaign.finished_at >= now - FOLLOW_UP),
            )
        )
        .order_by(Campaign.id)
    )
    return [Tracked(campaign_id, name) for campaign_id, name in rows]


def task_id(campaign_id: int) -> str:
    """The row's task id: the same for every refresh, so Flower keeps one row per
    campaign and moves it instead of adding one every few seconds."""
    return f"campaign-{campaign_id}-progress"


def label(tracked: Tracked) -> str:
    """The row's kwargs as Flower shows and searches them (``kwargs:campaign_id=7``),
    the name first: the cell shows its first ~45 characters."""
    return repr({"campaign": tracked.name, "campaign_id": tracked.campaign_id})


@dataclass(frozen=True, slots=True)
class Held:
    people: int
    until: datetime | None


def held(session: Session, campaign_id: int) -> Held:
    """People in batches held for later (a sending window, the messaging tier's day)."""
    people, until = session.execute(
        select(func.coalesce(func.sum(Batch.size), 0), func.min(Batch.not_before)).where(
            Batch.campaign_id == campaign_id, Batch.state == BatchState.HELD
        )
    ).one()
    return Held(int(people), until)


def snapshot(progress: Progress, held_now: Held) -> str:
    """The row's result, one line, most telling first: Flower's result cell shows its
    first ~45 characters (the rest scrolls), so delivered, read and failed lead.

    ``400 delivered, 200 read, 3 failed of 900 · 480 submitted, 420 sent · failed:
    112403 / WhatsApp 131049 (3) · 2 waiting for resend · 100 held until 2026-05-02
    08:00 UTC · 80/s of 80/s, ETA 5s``
    """
    p = progress
    parts = [f"{p.delivered} delivered, {p.read} read, {p.failed} failed of {p.messages}"]
    parts.append(f"{p.submitted} submitted, {p.sent} sent")
    if p.failures:
        ranked = sorted(p.failures.items(), key=lambda item: (-item[1], item[0]))
        reasons = [f"{reason} ({count})" for reason, count in ranked[:FAILURE_REASONS]]
        if rest := sum(count for _, count in ranked[FAILURE_REASONS:]):
            reasons.append(f"other ({rest})")
        parts.append("failed: " + ", ".join(reasons))
    if p.awaiting_resend:
        parts.append(f"{p.awaiting_resend} waiting for resend")
    if held_now.people:
        until = f"{held_now.until:%Y-%m-%d %H:%M} UTC" if held_now.until else "later"
        parts.append(f"{held_now.people} held until {until}")
    if p.skipped:
        parts.append(f"{sum(p.skipped.values())} skipped")
    if p.cancelled:
        parts.append(f"{p.cancelled} cancelled")
    if p.state in (CampaignState.SENDING, CampaignState.PAUSED):
        rate = f"{p.send_rate:g}/s of {p.rate_per_second or 0}/s"
        if (eta := p.eta_seconds) is not None:
            rate += f", ETA {_duration(eta)}"
        parts.append(rate)
    if p.state not in (CampaignState.SENDING, CampaignState.COMPLETED):
        parts.insert(0, str(p.state))
    if p.paused_by and p.state == CampaignState.PAUSED:
        parts.insert(1, f"by guardrail: {p.paused_by}")
    return " · ".join(parts)


_NUMBER = re.compile(r"\+\d{6,15}")


def reason(progress: Progress) -> str:
    """A failed campaign's reason as the row shows it: any phone number in it masked."""
    return _NUMBER.sub(lambda found: mask(found.group()), progress.error or "failed")


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
