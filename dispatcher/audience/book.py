"""The identity book: which identifiers belong to one WhatsApp user, as learned, and
since when.

Filled from status reports (LINK's DLR ``customParameters`` and Meta's ``contacts[]``:
destination, BSUID, parent BSUID), the answers to our requests, incoming messages, a
person's own number shared at our request, and the rows of the lists campaigns send
to; read when a campaign resolves its recipients. Every link keeps its source and
time, and a BSUID the business portfolio it was learned through (seed 004: usable
through that portfolio alone).

People change. A change event (Meta's ``user_changed_number``, ``user_changed_user_id``
and ``user_id_update``) *retires* the old identifier from that moment: its link moves
to ``retired_identities`` (history, never deleted), the new one joins the person, and
an opt-out on the old identifier moves to the person's current ones. A retired number
may be given to someone else: it is nobody's in the book until a report links it
again, and a report older than the retirement cannot bring the old link back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, aliased

from dispatcher.audience.recipients import BSUID, PARENT_BSUID
from dispatcher.db.bulk import among, holds_fewer, insert_arrays, matching, unnested
from dispatcher.db.models import Identity, RetiredIdentity
from dispatcher.db.timestamps import aware

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
    return {i: key for i, (key, _) in scoped(session, identifiers).items()}


def scoped(session: Session, identifiers: Collection[str]) -> dict[str, tuple[str, str]]:
    """identifier -> (person key, portfolio) for every identifier the book holds now
    (with its kin); the portfolio is a BSUID's, '' for a number.

    A list of a million against a book of a million is one statement on PostgreSQL
    (two hash joins: 1.3 M identifiers against 1 M links in about 2 s here, where
    chunked lookups took 10 s); a small book is read whole (``matching``)."""
    if len(identifiers) >= _ONE_STATEMENT_FROM and not holds_fewer(
        session, Identity.__table__, len(identifiers) // 8
    ):
        given = unnested(session, Identity.identifier, list(identifiers))
        if given is not None:
            asked = aliased(Identity)
            hits = select(asked.person_key).join(given, asked.identifier == given.c.value)
            query = select(*_PAIR, Identity.portfolio).where(Identity.person_key.in_(hits))
            return {i: (key, portfolio) for i, key, portfolio in session.execute(query)}
    keys = {key for _, key in matching(session, Identity.identifier, identifiers, *_PAIR)}
    return {
        identifier: (key, portfolio)
        for identifier, key, portfolio in matching(
            session, Identity.person_key, sorted(keys), *_PAIR, Identity.portfolio
        )
    }


_PAIR = (Identity.identifier, Identity.person_key)
_ONE_STATEMENT_FROM = 100_000  # identifiers asked at once


@dataclass(frozen=True, slots=True)
class Source:
    """Where a link was learned: the kind of event (csv, answer, dlr, mo, contacts,
    system, user_id_update), what it was (``ref``: "campaign 4 line 10", "message
    123", "report 77"), when it happened (now when not said), and the business
    portfolio its BSUIDs belong to ('' when not known)."""

    kind: str
    ref: str = ""
    at: datetime | None = None
    portfolio: str = ""


def learn(session: Session, identifiers: list[str], learned_from: str | Source) -> None:
    """Record that ``identifiers`` are one user, merging persons the book had apart."""
    learn_many(session, [identifiers], learned_from)


class Known:
    """Groups of identifiers the book holds as one person, remembered by one process
    (bounded) so that learning them again costs no lookup. Safe to keep: a group the
    book holds stays one person until a change retires one of its identifiers, and a
    report naming a retired link again is one from before the change, which must not
    bring it back anyway. Groups learned in a transaction count only once the caller
    says it committed (``commit``; ``discard`` after a rollback).
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
    learned_from: str | Source,
    *,
    known_groups: Known | None = None,
) -> int:
    """``learn`` for many groups of one source (see ``learn_links``)."""
    source = learned_from if isinstance(learned_from, Source) else Source(learned_from)
    return learn_links(session, ((g, source) for g in groups), known_groups=known_groups)


def learn_links(
    session: Session,
    links: Iterable[tuple[Sequence[str], Source]],
    *,
    known_groups: Known | None = None,
) -> int:
    """Record that each group of identifiers is one user, with where it was learned:
    one lookup for all of them, and nothing written for a group the book already holds
    as one person (the usual case: every report of a message names the same
    identifiers). An identifier retired after the event a group comes from is left
    out of it (a late report of the old owner), whether the book holds it again or
    not. Returns the groups that changed the book. ``known_groups`` remembers settled
    groups across calls (one database).
    """
    wanted: dict[tuple[str, ...], Source] = {}
    for identifiers, source in links:
        group = tuple(identifiers)
        settled = known_groups is not None and group in known_groups
        if len(group) > 1 and group not in wanted and not settled:
            wanted[group] = source
    if not wanted:
        return 0
    everyone = {i for group in wanted for i in group}
    known = _persons(session, list(everyone))
    retired = _retired_at(session, everyone)
    new: dict[str, dict[str, Any]] = {}
    now = datetime.now(UTC)
    changed = 0
    for whole, source in wanted.items():
        at = aware(source.at) or now
        if known_groups is not None:
            known_groups.add(whole)  # one person once this commits
        # Retired after the report's event: then it was someone else's link (the old
        # owner's, when a number held again since by its next owner).
        group = tuple(i for i in whole if not (i in retired and at <= retired[i]))
        if len(group) < 2:
            continue  # what is left names one identifier: nothing to link
        keys = sorted({known[i] for i in group if i in known})
        if len(keys) == 1 and all(i in known for i in group):
            continue  # nothing new
        changed += 1
        person_key = keys[0] if keys else group[0]
        if len(keys) > 1:
            _merge(session, person_key, set(keys[1:]), known, new)
        for identifier in group:
            if identifier not in known:
                known[identifier] = person_key
                kind = kind_of(identifier)
                new[identifier] = {
                    "identifier": identifier,
                    "kind": kind,
                    "person_key": person_key,
                    "learned_from": source.kind,
                    "learned_at": at,
                    "source": source.ref[:200],
                    "portfolio": source.portfolio if kind != "msisdn" else "",
                }
    insert_arrays(
        session,
        Identity.__table__,  # type: ignore[arg-type]
        list(new.values()),
        ignore_duplicates=True,
    )
    return changed


def _retired_at(session: Session, identifiers: Collection[str]) -> dict[str, datetime]:
    """identifier -> when it was last retired, for those of ``identifiers`` ever
    retired (few: the table holds changes only)."""
    if not identifiers:
        return {}
    found: dict[str, datetime] = {}
    rows = matching(
        session, RetiredIdentity.identifier, identifiers,
        RetiredIdentity.identifier, RetiredIdentity.retired_at,
    )  # fmt: skip
    for identifier, when in rows:
        when = aware(when)
        if identifier not in found or found[identifier] < when:
            found[identifier] = when
    return found


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
    session.execute(  # a retired link names the person its key stands for now
        update(RetiredIdentity)
        .where(RetiredIdentity.person_key.in_(others))
        .values(person_key=person_key)
    )
    for identifier, key in known.items():
        if key in others:
            known[identifier] = person_key
    for row in new.values():
        if row["person_key"] in others:
            row["person_key"] = person_key
