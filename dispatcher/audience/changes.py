"""Identity changes: a user's number or BSUID is no longer theirs.

WhatsApp says so in three ways (seed 002 ``user_changed_number``: ``from`` the old
number, ``new_wa_id`` the new one; seed 000 ``user_changed_user_id``: the new number and
BSUIDs in ``system``; seed 000 ``user_id_update``: the previous and current BSUID).
Each becomes a ``Change`` and is applied by one rule:

* the new identifiers join the person of the old and unchanged ones;
* each old identifier is *retired* from the change's moment: its link moves to
  ``retired_identities`` and the book no longer holds it, so no campaign after it sends
  to it as theirs (a recycled number is the next owner's once a report links it; a
  retired BSUID in a list resolves to its person's current identifiers, never to
  itself);
* an opt-out on an old identifier moves to the person's current identifiers: it stays
  with the person, and the number's next owner does not inherit it.

A change delivered twice changes nothing the second time; a change that arrives after
the old number was linked to somebody else (a webhook late by hours) leaves that link
alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db.bulk import among, insert_ignoring_duplicates
from dispatcher.db.models import Identity, RetiredIdentity, Suppression
from dispatcher.db.timestamps import aware

__all__ = ["Change", "apply_change", "as_of_now"]

_REASON_CHARS = 200
_GONE = "retired:"  # the key of a person who has no current identifier left


@dataclass(frozen=True, slots=True)
class Change:
    """One user's identifiers changed: ``old`` ones are no longer theirs from
    ``source.at``, ``new`` ones are, ``same`` ones still name them. Each holds valid
    identifiers only (``book.identifiers_in``)."""

    event: str  # user_changed_number | user_changed_user_id | user_id_update
    old: tuple[str, ...]
    new: tuple[str, ...]
    same: tuple[str, ...]
    source: book.Source


def apply_change(session: Session, change: Change) -> list[str]:
    """Apply ``change`` (see the module's docstring); returns the identifiers it
    retired."""
    at = aware(change.source.at) or datetime.now(UTC)
    source = book.Source(change.source.kind, change.source.ref, at, change.source.portfolio)
    staying = tuple(dict.fromkeys(i for i in (*change.same, *change.new)))
    old = tuple(i for i in dict.fromkeys(change.old) if i not in staying)
    held = {
        row.identifier: row
        for row in session.scalars(select(Identity).where(among(session, Identity.identifier, old)))
    } if old else {}  # fmt: skip
    # An old identifier linked since the change happened is its next owner's.
    theirs = [i for i in old if i not in held or aware(held[i].learned_at) <= at]
    book.learn_links(session, [((*theirs, *staying), source)])
    if not staying:
        person = next((held[i].person_key for i in theirs if i in held), None)
    else:
        found = book.lookup(session, staying)
        person = next((found[i] for i in staying if i in found), None)
    if person is None:
        return []
    rows = session.scalars(
        select(Identity).where(among(session, Identity.identifier, theirs))
    ).all()
    retiring = [row for row in rows if row.person_key == person]
    if not retiring:
        return []
    gone = {row.identifier for row in retiring}
    key = person
    if person in gone:  # the person's key is a retired identifier: key them anew
        remaining = session.scalars(
            select(Identity.identifier).where(
                Identity.person_key == person, ~Identity.identifier.in_(gone)
            )
        ).all()
        # Nothing left: a key no identifier can take, so that the identifier's next
        # owner is never this person.
        key = next((i for i in staying if i in remaining), min(remaining, default=""))
        key = key or f"{_GONE}{person}"
    why = f"{change.event} ({change.source.ref})" if change.source.ref else change.event
    session.add_all(
        RetiredIdentity(
            identifier=row.identifier,
            kind=row.kind,
            person_key=key,
            learned_from=row.learned_from,
            learned_at=row.learned_at,
            source=row.source,
            portfolio=row.portfolio,
            username=row.username,
            retired_at=at,
            retired_by=why[:_REASON_CHARS],
        )
        for row in retiring
    )
    session.execute(delete(Identity).where(among(session, Identity.identifier, sorted(gone))))
    if key != person:  # the person's links, current and retired, follow the new key
        for table in (Identity, RetiredIdentity):
            session.execute(update(table).where(table.person_key == person).values(person_key=key))
    session.flush()
    _carry_opt_outs(session, sorted(gone), key, why)
    return sorted(gone)


def as_of_now(session: Session, identifiers: Sequence[str], at: datetime) -> list[str]:
    """``identifiers`` named by an event at ``at``, as they stand now: one retired at or
    after ``at`` (the event came late, after the change) stands for its person's current
    identifiers, so that what the event says (an opt-out) reaches the person and not the
    identifier's next owner."""
    retired = session.execute(
        select(RetiredIdentity.identifier, RetiredIdentity.person_key).where(
            among(session, RetiredIdentity.identifier, identifiers),
            RetiredIdentity.retired_at >= at,
        )
    ).all()
    if not retired:
        return list(identifiers)
    gone = {identifier for identifier, _ in retired}
    keys = sorted({key for _, key in retired})
    current = session.scalars(
        select(Identity.identifier).where(among(session, Identity.person_key, keys))
    ).all()
    return list(dict.fromkeys([*(i for i in identifiers if i not in gone), *current]))


def _carry_opt_outs(session: Session, retired: Sequence[str], key: str, why: str) -> None:
    """An opt-out on a retired identifier moves to the person's current identifiers."""
    opted = session.execute(
        select(Suppression.identifier, Suppression.reason).where(
            among(session, Suppression.identifier, retired)
        )
    ).all()
    if not opted:
        return
    current = session.scalars(select(Identity.identifier).where(Identity.person_key == key)).all()
    if not current:
        return  # nobody to carry it to: it stays where it was given
    reason = f"{opted[0].reason}; followed the person after {why}"[:_REASON_CHARS]
    insert_ignoring_duplicates(
        session,
        Suppression.__table__,  # type: ignore[arg-type]
        [{"identifier": i, "reason": reason} for i in current],
    )
    session.execute(
        delete(Suppression).where(among(session, Suppression.identifier, [o[0] for o in opted]))
    )
