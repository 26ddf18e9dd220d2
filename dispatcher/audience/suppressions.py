"""The opt-out list: identifiers never to be messaged.

Entries are identifiers as the recipients loader normalises them (E.164 numbers,
BSUIDs, parent BSUIDs). A campaign matches them through identity resolution
(``dispatcher.audience.passes``): opting out by phone number also covers that user's BSUID
once a row or the identity book links the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, select

from dispatcher.audience.recipients import Reject, read_recipients
from dispatcher.db import Database, Suppression
from dispatcher.db.bulk import among, insert_arrays

_CHUNK = 5000


@dataclass(frozen=True, slots=True)
class Entry:
    identifier: str
    reason: str
    created_at: datetime

    def as_dict(self) -> dict[str, str]:
        return {
            "identifier": self.identifier,
            "reason": self.reason,
            "created_at": self.created_at.isoformat(),
        }


def identifiers_in(file: Path, region: str | None) -> tuple[list[str], list[Reject]]:
    """Every identifier of a CSV laid out like a recipients file, and its bad rows."""
    found: dict[str, None] = {}
    rejects: list[Reject] = []
    for item in read_recipients(file, region):
        if isinstance(item, Reject):
            rejects.append(item)
        else:
            found.update(dict.fromkeys(item.identifiers))
    return list(found), rejects


def add(db: Database, file: Path, reason: str, region: str | None) -> tuple[int, list[Reject]]:
    """Suppress the identifiers in ``file``; returns how many were new, and bad rows."""
    identifiers, rejects = identifiers_in(file, region)
    added = 0
    with db.session() as session:
        for start in range(0, len(identifiers), _CHUNK):
            chunk = identifiers[start : start + _CHUNK]
            known = set(
                session.scalars(
                    select(Suppression.identifier).where(
                        among(session, Suppression.identifier, chunk)
                    )
                )
            )
            new = [i for i in chunk if i not in known]
            now = datetime.now().astimezone()
            insert_arrays(
                session,
                Suppression.__table__,  # type: ignore[arg-type]
                [{"identifier": i, "reason": reason, "created_at": now} for i in new],
                ignore_duplicates=True,
            )
            added += len(new)
    return added, rejects


def remove(db: Database, file: Path, region: str | None) -> tuple[int, list[Reject]]:
    """Lift the suppression of the identifiers in ``file``; returns how many were on it."""
    identifiers, rejects = identifiers_in(file, region)
    removed = 0
    with db.session() as session:
        for start in range(0, len(identifiers), _CHUNK):
            chunk = identifiers[start : start + _CHUNK]
            result = session.execute(
                delete(Suppression).where(among(session, Suppression.identifier, chunk))
            )
            removed += result.rowcount  # type: ignore[attr-defined]
    return removed, rejects


def entries(db: Database, *, limit: int | None = None, offset: int = 0) -> list[Entry]:
    """The list, oldest first (ties by identifier, so pages do not overlap); a page of
    it with ``limit`` and ``offset``, read as such from the database."""
    query = (
        select(Suppression)
        .order_by(Suppression.created_at, Suppression.identifier)
        .offset(max(0, offset))
    )
    if limit is not None:
        query = query.limit(max(0, limit))
    with db.session() as session:
        return [Entry(s.identifier, s.reason, s.created_at) for s in session.scalars(query)]
