"""Incoming (MO) messages: identities learned, care windows opened, opt-outs kept.

Seed 004 'Incoming Messages Sent from Mobile Phones': ``source`` is the user's MSISDN
or BSUID, ``customParameters`` may add ``whatsappUserId`` / ``whatsappParentUserId``
(seed 004 'BSUID - Incoming Message Webhooks (MO) updates'). A person opts out by
sending one opt-out word alone, typed or as a button reply: STOP always, plus the words
of the ``OPT_OUT_WORDS`` setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db.bulk import insert_ignoring_duplicates, upsert_latest
from dispatcher.db.models import CareWindow, DeliveryReport, Suppression
from dispatcher.providers.link.models import IncomingMessage
from dispatcher.settings import get_settings
from dispatcher.tracking.intake import ReportState

# Punctuation people add around a keyword ("Stop.", "'STOP'") without changing it.
_AROUND = " \t\r\n.,;:!?'\"()[]{}*_~-"


def replies(message: IncomingMessage) -> Iterator[str]:
    """What the person typed or chose: the text, a template button's text and payload,
    an interactive button's or list row's title."""
    inner = (message.content or {}).get("message")
    if not isinstance(inner, dict):
        return
    yield from _strings(inner.get("text"))
    button = inner.get("button")
    if isinstance(button, dict):
        yield from _strings(button.get("text"), button.get("payload"))
    interactive = inner.get("interactive")
    if isinstance(interactive, dict):
        for kind in ("button_reply", "list_reply"):
            choice = interactive.get(kind)
            if isinstance(choice, dict):
                yield from _strings(choice.get("title"))


def opt_out_word(message: IncomingMessage, words: frozenset[str]) -> str | None:
    """The opt-out word the message consists of, if any (``words`` are case-folded)."""
    for reply in replies(message):
        word = " ".join(reply.strip(_AROUND).split()).casefold()
        if word in words:
            return word
    return None


def apply(
    session: Session,
    report_id: int,
    message: IncomingMessage,
    *,
    opt_out_words: frozenset[str] | None = None,
) -> bool:
    """Learn the sender's identities, open their care window, and suppress them when
    the message is an opt-out word. Returns True when the sender was suppressed."""
    words = get_settings().opt_out_keywords if opt_out_words is None else opt_out_words
    identifiers = book.identifiers_from(message.custom_parameters, message.source)
    book.learn(session, identifiers, "mo")
    # A message from the person opens the 24-hour customer care window (seed 004).
    at = _aware(message.timestamp) or datetime.now(UTC)
    upsert_latest(
        session,
        CareWindow.__table__,  # type: ignore[arg-type]
        "identifier",
        "last_incoming_at",
        [{"identifier": i, "last_incoming_at": at} for i in identifiers],
    )
    word = opt_out_word(message, words)
    if word is not None:
        insert_ignoring_duplicates(
            session,
            Suppression.__table__,  # type: ignore[arg-type]
            [{"identifier": i, "reason": f"opt-out keyword {word.upper()!r}"} for i in identifiers],
        )
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(state=ReportState.APPLIED, applied_at=datetime.now(UTC))
    )
    return word is not None and bool(identifiers)


def _strings(*values: Any) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
