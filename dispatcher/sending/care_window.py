"""The 24-hour customer care window, looked at when a request is about to leave.

Seed 004 '24 hour customer care window': "When a WhatsApp user sends a message to a
business's phone number a 24 hour customer care window opens ... Outside of the 24 hour
customer care window a template message is the only type of message that can be used."
So a window belongs to a (business number, person) pair, and it is judged at the moment
the message leaves: a batch held by the messaging tier, a sending window or a resend may
leave hours after preparation looked. A person whose window closed meanwhile is not
sent: the message becomes ``skipped`` (``SkipReason.CARE_WINDOW_CLOSED``).

Template campaigns, and those whose spec says ``outside_care_window: send``, pay
nothing; the others pay two small queries per claimed slice, never one per person.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import CareWindow, Message
from dispatcher.db.bulk import among, matching
from dispatcher.db.timestamps import aware
from dispatcher.status import MessageStatus, SkipReason

# Seed 004 'Template message' / '24 hour customer care window'.
CARE_WINDOW = timedelta(hours=24)

MESSAGES: Any = Message.__table__
WINDOWS: Any = CareWindow.__table__


def needs_window(spec: CampaignSpec) -> bool:
    """Its messages may only go to people whose care window is open."""
    return not spec.is_template and spec.outside_care_window == "skip"


def open_windows(
    session: Session, business: str, identifiers: Collection[str], now: datetime | None = None
) -> set[str]:
    """The identifiers among ``identifiers`` that wrote to ``business`` in the last 24 h
    (any number of them: preparation asks for a whole audience)."""
    since = (now or datetime.now(UTC)) - CARE_WINDOW
    rows = matching(
        session,
        CareWindow.identifier,
        identifiers,
        CareWindow.identifier,
        CareWindow.business,
        CareWindow.last_incoming_at,
    )
    return {i for i, number, last in rows if number == business and aware(last) >= since}


def skip_closed(
    session: Session,
    batches: Mapping[str, int],
    spec_of: Callable[[int], CampaignSpec],
    now: datetime | None = None,
) -> int:
    """Mark ``skipped`` the waiting messages of these batches (batch id -> campaign id;
    ``spec_of`` gives a campaign's spec) whose person has no open care window with the
    campaign's sender; returns how many. Run in the claim's transaction, before the
    waiting messages are read. Judged per campaign, not per batch: a slice of template
    requests costs a set of its campaigns and nothing more."""
    sources = {}
    for campaign_id in set(batches.values()):
        spec = spec_of(campaign_id)
        if needs_window(spec):
            sources[campaign_id] = spec.sender.source
    if not sources:
        return 0
    by_source: dict[str, list[str]] = {}
    for batch_id, campaign_id in batches.items():
        if campaign_id in sources:
            by_source.setdefault(sources[campaign_id], []).append(batch_id)
    skipped = 0
    moment = now or datetime.now(UTC)
    for source, batch_ids in by_source.items():
        m = MESSAGES.c
        connection = session.connection()
        rows = connection.execute(
            select(m.id, m.destination, m.identifiers).where(
                among(session, m.batch_id, batch_ids), m.status == MessageStatus.QUEUED
            )
        ).all()
        if not rows:
            continue
        everyone = {i for r in rows for i in (r.identifiers or ())} | {r.destination for r in rows}
        since = moment - CARE_WINDOW
        w = WINDOWS.c
        open_now = set(
            connection.execute(
                select(w.identifier).where(
                    w.business == source,
                    among(session, w.identifier, sorted(everyone)),
                    w.last_incoming_at >= since,
                )
            ).scalars()
        )
        closed = [
            r.id
            for r in rows
            if r.destination not in open_now and open_now.isdisjoint(r.identifiers or ())
        ]
        if closed:
            reason = SkipReason.CARE_WINDOW_CLOSED
            skipped += connection.execute(
                update(MESSAGES)
                .where(among(session, m.id, closed), m.status == MessageStatus.QUEUED)
                .values(
                    status=MessageStatus.SKIPPED,
                    skip_reason=reason.value,
                    result_description=reason.description,
                )
            ).rowcount
    return skipped
