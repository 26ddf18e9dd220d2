"""Identity changes and usernames from webhooks, applied to the identity book.

A provider says a user's identifiers changed (Meta: ``system`` messages
``user_changed_number`` and ``user_changed_user_id``, ``user_id_update``; seeds 000 and
002) as a ``providers.base.IdentityChange``. Each is applied by the book's one rule for
changes (``audience.changes``): the new identifiers join the person, the old ones are
retired from the change's moment, and an opt-out follows the person. The change's
source is ``system`` or ``user_id_update``, "report R" (the stored body), with the
business portfolio of the number the webhook came to (``SENDER_PORTFOLIOS``): a BSUID
it brings is scoped to that portfolio (seed 004).

Usernames (seed 000 ``contacts[].profile.username``) are display only: stored on the
rows of the identifiers the book holds for the contact, never a destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.audience.changes import Change, apply_change
from dispatcher.db.bulk import among, matching
from dispatcher.db.models import Identity
from dispatcher.providers.base import IdentityChange, Username
from dispatcher.settings import get_settings
from dispatcher.tracking.intake import settle

__all__ = ["apply", "store_usernames"]

_USERNAME_CHARS = 64
# The change events told by a system message; the rest name themselves.
_SYSTEM = frozenset({"user_changed_number", "user_changed_user_id"})


def apply(
    session: Session,
    changes: Sequence[tuple[int, IdentityChange]],
    usernames: Sequence[tuple[int, Username]] = (),
) -> int:
    """Apply identity changes, each with the stored report it came in, then store
    usernames; returns how many reports had a change naming someone (those are
    ``applied``; a report whose changes name nobody is ``ignored``, unless something
    else in it was applied). A change delivered twice changes nothing the second time.
    """
    now = datetime.now(UTC)
    settings = get_settings()
    kept: set[int] = set()
    for report_id, said in changes:
        old = book.identifiers_in(tuple(said.old))
        new = book.identifiers_in(tuple(said.new))
        if not old and not new:
            continue  # nothing changes hands
        source = book.Source(
            "system" if said.event in _SYSTEM else said.event,
            f"report {report_id}",
            said.at,
            settings.portfolio_name(said.business_number),
        )
        same = book.identifiers_in(tuple(said.same))
        apply_change(session, Change(said.event, old, new, same, source))
        kept.add(report_id)
    store_usernames(session, [username for _, username in usernames])
    settle(session, kept, {report_id for report_id, _ in changes} - kept, now)
    return len(kept)


def store_usernames(session: Session, usernames: Sequence[Username]) -> int:
    """Store each username on the rows of the identifiers the book holds for its
    contact, where it differs (the last one said wins); returns the rows changed."""
    wanted: dict[str, str] = {}
    for raw, username in usernames:
        for identifier in book.identifiers_in(tuple(raw)):
            wanted[identifier] = username[:_USERNAME_CHARS]
    if not wanted:
        return 0
    held = matching(
        session, Identity.identifier, list(wanted), Identity.identifier, Identity.username
    )
    by_name: dict[str, list[str]] = {}
    for identifier, username in held:
        if wanted[identifier] != username:
            by_name.setdefault(wanted[identifier], []).append(identifier)
    for username, identifiers in by_name.items():
        session.execute(
            update(Identity)
            .where(among(session, Identity.identifier, sorted(identifiers)))
            .values(username=username)
        )
    return sum(len(identifiers) for identifiers in by_name.values())
