"""Incoming (MO) messages: identities learned, care windows opened (with the business
number written to), opt-outs kept.

The provider says who sent the message (every identifier it names) and what they typed
or chose (``IncomingReport``). The identifiers are linked with the source "report R"
(the stored body) at the message's time, a BSUID scoped to the portfolio of the
business number written to; a contacts message in which the sender shares their own
number (``shares_own_number``) links it as learned from ``contacts``. A person opts
out by sending one opt-out word alone, typed or as a button reply: STOP always, plus
the words of the ``OPT_OUT_WORDS`` setting. A message answering one of a campaign's
messages counts as its reply (``replies``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatcher.audience import book, changes
from dispatcher.db.bulk import insert_ignoring_duplicates, upsert_latest
from dispatcher.db.models import CareWindow, DeliveryReport, Suppression
from dispatcher.db.timestamps import aware
from dispatcher.providers import IncomingReport
from dispatcher.settings import get_settings
from dispatcher.tracking import replies
from dispatcher.tracking.intake import ReportState

# Punctuation people add around a keyword ("Stop.", "'STOP'") without changing it.
_AROUND = " \t\r\n.,;:!?'\"()[]{}*_~-"


def opt_out_word(message: IncomingReport, words: frozenset[str]) -> str | None:
    """The opt-out word the message consists of, if any (``words`` are case-folded)."""
    for reply in message.replies():
        word = " ".join(reply.strip(_AROUND).split()).casefold()
        if word in words:
            return word
    return None


def apply(
    session: Session,
    report_id: int,
    message: IncomingReport,
    *,
    opt_out_words: frozenset[str] | None = None,
) -> bool:
    """Learn the sender's identities, open their care window, and suppress them when
    the message is an opt-out word. Returns True when the sender was suppressed."""
    words = get_settings().opt_out_keywords if opt_out_words is None else opt_out_words
    identifiers = list(book.identifiers_in(message.named_identifiers))
    at = aware(message.timestamp) or datetime.now(UTC)
    business = message.business_number or ""
    kind = "contacts" if message.shares_own_number else "mo"
    portfolio = get_settings().portfolio_name(business)
    book.learn(session, identifiers, book.Source(kind, f"report {report_id}", at, portfolio))
    # Seed 004: "When a WhatsApp user sends a message to a business's phone number a 24
    # hour customer care window opens": with that number only ('' when not said).
    upsert_latest(
        session,
        CareWindow.__table__,  # type: ignore[arg-type]
        ("business", "identifier"),
        "last_incoming_at",
        [{"business": business, "identifier": i, "last_incoming_at": at} for i in identifiers],
    )
    word = opt_out_word(message, words)
    if word is not None:
        # A STOP applied after a change it came before: the person's, not the retired
        # identifier's next owner's.
        stopped = changes.as_of_now(session, identifiers, at)
        insert_ignoring_duplicates(
            session,
            Suppression.__table__,  # type: ignore[arg-type]
            [{"identifier": i, "reason": f"opt-out keyword {word.upper()!r}"} for i in stopped],
        )
    replies.record(session, report_id, message)
    session.execute(
        update(DeliveryReport)
        # A body that also holds status reports still unmatched (Meta's) stays so: the
        # sweep brings it back, and this message's effects are the same a second time.
        .where(DeliveryReport.id == report_id, DeliveryReport.state != ReportState.UNMATCHED)
        .values(state=ReportState.APPLIED, applied_at=datetime.now(UTC))
    )
    return word is not None and bool(identifiers)
