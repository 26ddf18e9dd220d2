"""The identity book: which identifiers belong to one WhatsApp user, as learned.

Filled from DLR ``customParameters`` (destination, whatsappUserId,
whatsappParentUserId) and incoming messages (``source`` + customParameters), per
seed 004's BSUID sections; read when a campaign resolves its recipients.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.db.models import Identity
from dispatcher.dbutil import insert_ignoring_duplicates
from dispatcher.recipients import BSUID, PARENT_BSUID

_CHUNK = 500


def kind_of(identifier: str) -> str | None:
    if identifier.startswith("+") and identifier[1:].isdigit():
        return "msisdn"
    if PARENT_BSUID.match(identifier):
        return "parent_bsuid"
    if BSUID.match(identifier):
        return "bsuid"
    return None


def identifiers_from(
    custom_parameters: Mapping[str, object] | None, *extra: str | None
) -> list[str]:
    """Valid identifiers named by a webhook, deduplicated, phone number first."""
    found: list[str] = []
    values: list[object] = list(extra)
    if custom_parameters:
        values += [
            custom_parameters.get(key)
            for key in ("destination", "whatsappUserId", "whatsappParentUserId")
        ]
    for value in values:
        if isinstance(value, str):
            text = value.strip()
            if text and not text.startswith("+") and text.isdigit():
                text = "+" + text  # WhatsApp ids come without '+'
            if kind_of(text) and text not in found:
                found.append(text)
    return sorted(found, key=lambda i: kind_of(i) != "msisdn")


def lookup(session: Session, identifiers: Iterable[str]) -> dict[str, str]:
    """identifier -> person key, for every identifier the book knows (with its kin)."""
    wanted = list(dict.fromkeys(identifiers))
    keys: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        keys.update(
            session.scalars(select(Identity.person_key).where(Identity.identifier.in_(chunk)))
        )
    book: dict[str, str] = {}
    key_list = list(keys)
    for start in range(0, len(key_list), _CHUNK):
        chunk = key_list[start : start + _CHUNK]
        for identifier, key in session.execute(
            select(Identity.identifier, Identity.person_key).where(Identity.person_key.in_(chunk))
        ):
            book[identifier] = key
    return book


def learn(session: Session, identifiers: list[str], learned_from: str) -> None:
    """Record that ``identifiers`` are one user, merging persons the book had apart."""
    if len(identifiers) < 2:
        return
    known = dict(
        session.execute(
            select(Identity.identifier, Identity.person_key).where(
                Identity.identifier.in_(identifiers)
            )
        ).all()
    )
    keys = sorted(set(known.values()))
    person_key = keys[0] if keys else identifiers[0]
    if len(keys) > 1:
        session.execute(
            update(Identity).where(Identity.person_key.in_(keys[1:])).values(person_key=person_key)
        )
    new = [
        {
            "identifier": identifier,
            "kind": kind_of(identifier),
            "person_key": person_key,
            "learned_from": learned_from,
        }
        for identifier in identifiers
        if identifier not in known
    ]
    insert_ignoring_duplicates(session, Identity.__table__, new)  # type: ignore[arg-type]
