"""What the dispatcher knows of one person, for an operator who asks by their phone
number or BSUID: the identifiers the identity book holds as theirs, their messages in
campaigns, and what the business sent them from the WhatsApp Business app (echoes,
``tracking.echoes``), newest first. It only reads.

A person's messages are found by ``messages.identity_key``, which is always one of
the person's identifiers (their book key, itself an identifier, or the one they were
sent to): campaign by campaign through the unique key (campaign_id, identity_key), so
the lookup reads no table whole and no new index on ``messages`` slows its inserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.audience.recipients import normalise_msisdn
from dispatcher.db.models import Campaign, Identity, Message, WhatsAppEcho
from dispatcher.db.timestamps import aware

__all__ = ["CampaignMessage", "Echoed", "KnownIdentifier", "Person", "identifier_of", "look_up"]


@dataclass(frozen=True, slots=True)
class KnownIdentifier:
    identifier: str
    kind: str  # msisdn | bsuid | parent_bsuid
    #: where and when the book learned it; None for an identifier it does not hold
    learned_from: str | None = None
    learned_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class CampaignMessage:
    campaign_id: int
    campaign_name: str
    destination: str  # the identifier it was sent to
    status: str
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Echoed:
    """A message the business sent the person from the WhatsApp Business app."""

    sent_at: datetime
    kind: str
    business_number: str  # '' when the echo did not say
    recipient: str
    original_message_id: str | None


@dataclass(frozen=True, slots=True)
class Person:
    asked: str
    identifiers: tuple[KnownIdentifier, ...]
    messages: tuple[CampaignMessage, ...]
    echoes: tuple[Echoed, ...]

    @property
    def known(self) -> bool:
        """The dispatcher holds anything of them at all."""
        learned = any(i.learned_from is not None for i in self.identifiers)
        return learned or bool(self.messages or self.echoes)


def identifier_of(text: str, region: str | None = None) -> str | None:
    """An identifier as the dispatcher stores it: a BSUID or parent BSUID as written, a
    phone number in E.164 (national with ``region``, or international); None when it is
    neither."""
    written = text.strip()
    if book.kind_of(written) in ("bsuid", "parent_bsuid"):
        return written
    return normalise_msisdn(written, region)


def look_up(session: Session, identifier: str, *, limit: int = 20) -> Person:
    """What is known of the person ``identifier`` (as ``identifier_of`` writes it): at
    most ``limit`` campaign messages and ``limit`` echoes, newest first."""
    persons = book.lookup(session, [identifier])
    identifiers = sorted({identifier, *persons}, key=_book_order)
    keys = set(persons.values()) | set(identifiers)
    learned = {
        row.identifier: row
        for row in session.scalars(select(Identity).where(Identity.identifier.in_(identifiers)))
    }
    known = tuple(
        KnownIdentifier(i, learned[i].kind, learned[i].learned_from, aware(learned[i].learned_at))
        if i in learned
        else KnownIdentifier(i, book.kind_of(i) or "unknown")
        for i in identifiers
    )
    messages = session.execute(
        select(
            Message.campaign_id,
            Campaign.name,
            Message.destination,
            Message.status,
            Message.updated_at,
        )
        .select_from(Campaign)
        .join(Message, and_(Message.campaign_id == Campaign.id, Message.identity_key.in_(keys)))
        .order_by(Message.updated_at.desc(), Message.id.desc())
        .limit(limit)
    ).all()
    echoes = session.scalars(
        select(WhatsAppEcho)
        .where(
            or_(
                WhatsAppEcho.recipient.in_(identifiers),
                WhatsAppEcho.recipient_user_id.in_(identifiers),
            )
        )
        .order_by(WhatsAppEcho.sent_at.desc(), WhatsAppEcho.id.desc())
        .limit(limit)
    ).all()
    return Person(
        asked=identifier,
        identifiers=known,
        messages=tuple(
            CampaignMessage(m.campaign_id, m.name, m.destination, m.status, aware(m.updated_at))
            for m in messages
        ),
        echoes=tuple(
            Echoed(aware(e.sent_at), e.kind, e.business_number, e.recipient, e.original_message_id)
            for e in echoes
        ),
    )


_KIND_ORDER = {"msisdn": 0, "bsuid": 1, "parent_bsuid": 2}


def _book_order(identifier: str) -> tuple[int, str]:
    """Phone numbers first, then BSUIDs, then parent BSUIDs (as the book writes them)."""
    return _KIND_ORDER.get(book.kind_of(identifier) or "", 3), identifier
