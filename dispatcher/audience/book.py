"""The identity book: which identifiers belong to one WhatsApp user, as learned.

Filled from DLR ``customParameters`` (destination, whatsappUserId,
whatsappParentUserId) and incoming messages (``source`` + customParameters), per
seed 004's BSUID sections; read when a campaign resolves its recipients.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.audience.recipients import BSUID, PARENT_BSUID
from dispatcher.db.bulk import among, insert_arrays, matching
from dispatcher.db.models import Identity

_CHUNK = 500
_LEARN_CHUNK = 5000  # SQLite takes at most 32766 parameters per statement


def kind_of(identifier: str) -> str | None:
    if identifier.startswith("+") and identifier[1:].isdigit():
        return "msisdn"
    if PARENT_BSUID.match(identifier):
        return "parent_bsuid"
    if BSUID.match(identifier):
        return "bsuid"
    return None


@lru_cache(maxsize=65536)
def identifiers_in(values: tuple[str | None, ...]) -> tuple[str, ...]:
    """The valid identifiers among a webhook's raw values, deduplicated, phone number
    first. Cached: every report of a message names the same identifiers."""
    found: dict[str, str] = {}
    for value in values:
        if value is None:
            continue
        text = value.strip()
        if text and not text.startswith("+") and text.isdigit():
            text = "+" + text  # WhatsApp ids come without '+'
        kind = kind_of(text) if text not in found else None
        if kind:
            found[text] = kind
    return tuple(sorted(found, key=lambda i: found[i] != "msisdn"))


def lookup(session: Session, identifiers: Collection[str]) -> dict[str, str]:
    """identifier -> person key, for every identifier the book knows (with its kin)."""
    keys = {key for _, key in matching(session, Identity.identifier, identifiers, *_PAIR)}
    return dict(matching(session, Identity.person_key, sorted(keys), *_PAIR))


_PAIR = (Identity.identifier, Identity.person_key)


def learn(session: Session, identifiers: list[str], learned_from: str) -> None:
    """Record that ``identifiers`` are one user, merging persons the book had apart."""
    learn_many(session, [identifiers], learned_from)


class Known:
    """Groups of identifiers the book holds as one person, remembered by one process
    (bounded) so that learning them again costs no lookup. Safe to keep: the book only
    ever merges persons, never splits them. Groups learned in a transaction count only
    once the caller says it committed (``commit``; ``discard`` after a rollback).
    """

    def __init__(self, size: int = 200_000) -> None:
        self.size = size
        self._groups: dict[tuple[str, ...], None] = {}
        self._pending: list[tuple[str, ...]] = []

    def __contains__(self, group: tuple[str, ...]) -> bool:
        return group in self._groups

    def add(self, group: tuple[str, ...]) -> None:
        self._pending.append(group)

    def commit(self) -> None:
        for group in self._pending:
            if len(self._groups) >= self.size:
                self._groups.pop(next(iter(self._groups)))  # the oldest
            self._groups[group] = None
        self._pending.clear()

    def discard(self) -> None:
        self._pending.clear()


def learn_many(
    session: Session,
    groups: Iterable[Sequence[str]],
    learned_from: str,
    *,
    known_groups: Known | None = None,
) -> int:
    """``learn`` for many groups at once: one lookup for all of them, and nothing
    written for a group the book already holds as one person (the usual case: every
    report of a message names the same identifiers). Returns the groups that changed
    the book. ``known_groups`` remembers settled groups across calls (one database).
    """
    wanted = list(dict.fromkeys(tuple(g) for g in groups if len(g) > 1))
    if known_groups is not None:
        wanted = [g for g in wanted if g not in known_groups]
    if not wanted:
        return 0
    known = _persons(session, [i for group in wanted for i in group])
    new: dict[str, dict[str, Any]] = {}
    now = datetime.now(UTC)
    changed = 0
    for group in wanted:
        keys = sorted({known[i] for i in group if i in known})
        if known_groups is not None:
            known_groups.add(group)  # one person once this commits
        if len(keys) == 1 and all(i in known for i in group):
            continue  # nothing new
        changed += 1
        person_key = keys[0] if keys else group[0]
        if len(keys) > 1:
            _merge(session, person_key, set(keys[1:]), known, new)
        for identifier in group:
            if identifier not in known:
                known[identifier] = person_key
                new[identifier] = {
                    "identifier": identifier,
                    "kind": kind_of(identifier),
                    "person_key": person_key,
                    "learned_from": learned_from,
                    "learned_at": now,
                }
    insert_arrays(
        session,
        Identity.__table__,  # type: ignore[arg-type]
        list(new.values()),
        ignore_duplicates=True,
    )
    return changed


def _persons(session: Session, identifiers: list[str]) -> dict[str, str]:
    """identifier -> person key, for those of ``identifiers`` the book knows."""
    known: dict[str, str] = {}
    every = list(dict.fromkeys(identifiers))
    for start in range(0, len(every), _LEARN_CHUNK):
        chunk = every[start : start + _LEARN_CHUNK]
        query = select(Identity.identifier, Identity.person_key).where(
            among(session, Identity.identifier, chunk)
        )
        known.update((identifier, key) for identifier, key in session.execute(query))
    return known


def _merge(
    session: Session,
    person_key: str,
    others: set[str],
    known: dict[str, str],
    new: dict[str, dict[str, Any]],
) -> None:
    """Persons the book had apart are one: every identifier of ``others`` moves over."""
    session.execute(
        update(Identity).where(Identity.person_key.in_(others)).values(person_key=person_key)
    )
    for identifier, key in known.items():
        if key in others:
            known[identifier] = person_key
    for row in new.values():
        if row["person_key"] in others:
            row["person_key"] = person_key
