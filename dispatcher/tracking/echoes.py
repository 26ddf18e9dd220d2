"""Messages the business sent people from outside the dispatcher: kept per person.

Meta's ``smb_message_echoes`` (seed 003) tell the business what it sent from the
WhatsApp Business app on a number it also uses with the Cloud API: to whom (``to``,
and ``to_user_id`` / ``to_parent_user_id``, seed 000), when, of what kind (``text``,
``image``, ``edit``, ``revoke``...) and, for an edit or a revoke, the message it is
about. One row an echo (``WhatsAppEcho``), shown with the person
(``operations.person``); what the message said is not kept.

An echo is the business writing, not the person: it opens and extends no customer
care window (only a message from the user does, seed 004), answers nothing (no reply
is counted), and is none of a campaign's messages (its id is never looked up among
theirs, and nothing of theirs is changed). The identifiers it names are one user, as
a status report's are, so the identity book learns them (source "report R", at the
echo's time, a BSUID scoped to the portfolio of the business number it was sent from).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db.bulk import insert_ignoring_duplicates
from dispatcher.db.models import WhatsAppEcho
from dispatcher.db.timestamps import aware
from dispatcher.providers import MAX_ID_CHARS, EchoReport
from dispatcher.settings import get_settings
from dispatcher.tracking.intake import settle

__all__ = ["apply"]

_ECHOES: Table = WhatsAppEcho.__table__  # type: ignore[assignment]
_KIND_CHARS = 16
_E164_CHARS = 16  # '+' and at most 15 digits


def apply(session: Session, echoes: Sequence[tuple[int, EchoReport]]) -> int:
    """Store echoes, each with the stored report it came in; returns how many reports
    had one worth keeping (those are ``applied``; a report whose echoes name nobody or
    have no id is ``ignored``, unless something else in it was applied). An echo
    delivered twice is one row."""
    now = datetime.now(UTC)
    rows: dict[str, dict[str, Any]] = {}
    settings = get_settings()
    links: list[tuple[tuple[str, ...], book.Source]] = []
    kept: set[int] = set()
    for report_id, echo in echoes:
        named = book.identifiers_in(echo.named_identifiers)
        row = _row(report_id, echo, named, now)
        if row is None:
            continue
        rows.setdefault(row["wa_message_id"], row)
        kept.add(report_id)
        if len(named) > 1:
            portfolio = settings.portfolio_name(echo.business_number)
            source = book.Source("echo", f"report {report_id}", row["sent_at"], portfolio)
            links.append((named, source))
    book.learn_links(session, links)
    insert_ignoring_duplicates(session, _ECHOES, list(rows.values()))
    settle(session, kept, {report_id for report_id, _ in echoes} - kept, now)
    return len(kept)


def _row(
    report_id: int, echo: EchoReport, named: tuple[str, ...], now: datetime
) -> dict[str, Any] | None:
    """The echo's row (``named``: its valid identifiers, phone number first); None when
    it has no id to keep it once by, or names nobody."""
    wa_id = echo.message_id
    if not wa_id or len(wa_id) > MAX_ID_CHARS or not named:
        return None
    business = echo.business_number or ""
    original = echo.original_message_id
    return {
        "business_number": business if len(business) <= _E164_CHARS else "",
        "recipient": named[0],  # the phone number when it is given
        "recipient_user_id": next((i for i in named if book.kind_of(i) == "bsuid"), None),
        "wa_message_id": wa_id,
        "kind": echo.type[:_KIND_CHARS],
        "original_message_id": original if original and len(original) <= MAX_ID_CHARS else None,
        "sent_at": aware(echo.timestamp) or now,
        "report_id": report_id,
    }
