"""Who shared their number: the people of a campaign whose phone number the identity
book learned from a contacts message (their answer to a ``contact_request`` or a
REQUEST_CONTACT_INFO button, learned_from ``contacts``) after the campaign started.

Few numbers are shared, so the search starts from them: the book's contacts links
since the campaign was registered, their persons' identifiers (current and retired),
and the campaign's messages to those persons through the unique key (campaign_id,
identity_key), never a scan of the campaign's messages.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db import Campaign, Message
from dispatcher.db.bulk import among, matching
from dispatcher.db.models import Identity, RetiredIdentity
from dispatcher.db.timestamps import aware

#: ``Identity.learned_from`` of a number a user shared (``book.Source`` kind).
CONTACTS = "contacts"
_CHUNK = 5000  # SQLite takes at most 32766 parameters per statement


@dataclass(frozen=True, slots=True)
class SharedNumber:
    """One person of a campaign who shared their number: the campaign's message to them
    (its destination, a BSUID), the number and when the book learned it."""

    destination: str
    identity_key: str
    number: str
    at: datetime
    source: str


def shared_numbers(session: Session, campaign_id: int) -> list[SharedNumber]:
    """The campaign's people who shared their number since it was registered, by the
    time they shared it."""
    started = session.scalar(select(Campaign.created_at).where(Campaign.id == campaign_id))
    if started is None:
        return []
    shared = {
        number: (aware(at), source or "")
        for number, at, source in session.execute(
            select(Identity.identifier, Identity.learned_at, Identity.source).where(
                Identity.learned_from == CONTACTS,
                Identity.kind == "msisdn",
                Identity.learned_at >= started,
            )
        )
    }
    if not shared:
        return []
    person_of: dict[str, str] = {}
    latest: dict[str, str] = {}  # person key -> the number it shared last
    for key, identifiers in _identifiers_by_person(session, shared).items():
        person_of.update(dict.fromkeys(identifiers, key))
        numbers = [n for n in identifiers if n in shared]
        if numbers:
            latest[key] = max(numbers, key=lambda n: shared[n][0])
    found: list[SharedNumber] = []
    keys = list(person_of)
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for destination, identity_key in session.execute(
            select(Message.destination, Message.identity_key).where(
                Message.campaign_id == campaign_id, among(session, Message.identity_key, chunk)
            )
        ):
            number = latest.get(person_of[identity_key])
            if number is not None:
                at, source = shared[number]
                found.append(SharedNumber(destination, identity_key, number, at, source))
    return sorted(found, key=lambda s: (s.at, s.destination))


def _identifiers_by_person(session: Session, numbers: Collection[str]) -> dict[str, set[str]]:
    """person key -> every identifier the book links to it now, and those it retired
    (the campaign may have been sent to an identifier retired since)."""
    persons: dict[str, set[str]] = {}
    for identifier, key in book.lookup(session, numbers).items():
        persons.setdefault(key, set()).add(identifier)
    for identifier, key in matching(
        session, RetiredIdentity.person_key, sorted(persons),
        RetiredIdentity.identifier, RetiredIdentity.person_key,
    ):  # fmt: skip
        persons[key].add(identifier)
    return persons
