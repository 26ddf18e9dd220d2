"""Sending windows in the recipient's local time ("09:00-20:00 where they live").

A person's time zone comes from their phone number (phonenumbers' time zone data, by
number prefix; when a prefix spans several zones, the first it lists, polar outposts
last), from the
country of a BSUID (``NO.…``), else the window's ``fallback_time_zone``.

Preparation groups people by time zone, so every request's destinations share one.
Just before a batch would be sent, a batch whose zone is outside the window is
``held`` until the window next opens there; ``release_held`` (every 10 s) hands it
out again then. A campaign therefore pauses for the people outside their window and
goes on for the others, and each group starts when its own morning comes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers import timezone as number_zones
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.db import Message
from dispatcher.db.bulk import among
from dispatcher.sending import batch_states

RECIPIENT = "recipient"
_OUTPOSTS = ("Arctic/", "Antarctica/")


def is_open(start: time, end: time, local: time) -> bool:
    """Whether ``local`` falls in [start, end); a window may cross midnight."""
    if start <= end:
        return start <= local < end
    return local >= start or local < end


def next_open(start: time, end: time, zone: str, now: datetime) -> datetime:
    """``now`` if the window is open in ``zone``, else when it next opens (UTC)."""
    local = now.astimezone(ZoneInfo(zone))
    if is_open(start, end, local.time()):
        return now
    opening = datetime.combine(local.date(), start, tzinfo=local.tzinfo)
    if opening <= local:
        opening = datetime.combine(local.date() + timedelta(days=1), start, tzinfo=local.tzinfo)
    # Wall-clock arithmetic across a DST change: normalise through UTC.
    return opening.astimezone(UTC)


@lru_cache(maxsize=65536)
def zone_of(destination: str, fallback: str) -> str:
    """The IANA time zone of a destination (E.164 number or BSUID)."""
    if destination.startswith("+"):
        try:
            number = phonenumbers.parse(destination, None)
        except phonenumbers.NumberParseException:
            return fallback
        zones = number_zones.time_zones_for_number(number)
    else:
        region = destination.partition(".")[0].upper()
        example = phonenumbers.example_number(region) if len(region) == 2 else None
        zones = number_zones.time_zones_for_number(example) if example else ()
    known = [z for z in zones if z != number_zones.UNKNOWN_TIMEZONE]
    # Norway's numbers also list Svalbard's zone first (same clock): name the mainland.
    settled = [z for z in known if not z.startswith(_OUTPOSTS)] or known
    return settled[0] if settled else fallback


def hold_closed(
    session: Session,
    batches: Iterable[tuple[str, tuple[time, time, str, str]]],
    now: datetime,
) -> set[str]:
    """Hold the batches whose recipients' window is closed now, until it opens; returns
    their ids. ``batches``: (batch id, (start, end, time zone or 'recipient', fallback))."""
    windows = dict(batches)
    if not windows:
        return set()
    one_each = dict(
        session.execute(
            select(Message.batch_id, func.min(Message.destination))
            .where(among(session, Message.batch_id, list(windows)))
            .group_by(Message.batch_id)
        ).all()
    )
    held: dict[datetime, list[str]] = {}
    for batch_id, (start, end, zone, fallback) in windows.items():
        destination = one_each.get(batch_id)
        if destination is None:
            continue
        where = zone_of(destination, fallback) if zone == RECIPIENT else zone
        opens = next_open(start, end, where, now)
        if opens > now:
            held.setdefault(opens, []).append(batch_id)
    for opens, ids in held.items():
        batch_states.hold(session, ids, opens)
    return {batch_id for ids in held.values() for batch_id in ids}


def release_held(session: Session, now: datetime | None = None) -> list[str]:
    """Batches held (by their recipients' sending window or by the messaging tier) whose
    time has come: pending again (of campaigns still sending); returns their ids, to be
    handed to the send queue."""
    return sorted(batch_states.release_due(session, now or datetime.now(UTC)))
