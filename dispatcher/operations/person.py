"""What the dispatcher knows of one person, for an operator who asks by their phone
number or BSUID: every identifier the identity book links to them now and linked
before (a change retires a link, ``retired_identities``), with where and when each was
learned, their usernames, which identifiers are on the opt-out list, their messages in
campaigns, and what the business sent them from the WhatsApp Business app (echoes,
``tracking.echoes``), newest first. Enough to answer "why did this number not get the
campaign?" at once. It only reads.

A retired link names its person's key as it is now (``audience.changes`` and the
book's merges keep it so): the person it belongs to now is the one the book holds
under that key, if any.

A person's messages are found by ``messages.identity_key``, which is always one of
the person's identifiers (their book key, itself an identifier, or the one they were
sent to): campaign by campaign through the unique key (campaign_id, identity_key), so
the lookup reads no table whole and no new index on ``messages`` slows its inserts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from dispatcher.audience import book
from dispatcher.audience.recipients import normalise_msisdn
from dispatcher.db.models import (
    Campaign,
    Identity,
    Message,
    RetiredIdentity,
    Suppression,
    WhatsAppEcho,
)
from dispatcher.db.timestamps import aware

__all__ = [
    "CampaignMessage",
    "Echoed",
    "Former",
    "KnownIdentifier",
    "Person",
    "identifier_of",
    "look_up",
]


@dataclass(frozen=True, slots=True)
class KnownIdentifier:
    """One link of the person: current, or retired (``retired_at`` set)."""

    identifier: str
    kind: str  # msisdn | bsuid | parent_bsuid
    #: where and when the book learned it; None for an identifier it does not hold
    learned_from: str | None = None
    learned_at: datetime | None = None
    source: str = ""  # "campaign 4 line 10", "message 123", "report 77"
    portfolio: str = ""  # a BSUID's business portfolio
    username: str | None = None
    retired_at: datetime | None = None
    retired_by: str | None = None  # "user_changed_number (report 12)"
    opt_out: str | None = None  # the opt-out list's reason, when it is on it

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "identifier": self.identifier,
            "kind": self.kind,
            "current": self.learned_from is not None and not self.retired,
            "learned_from": self.learned_from,
            "source": self.source,
            "learned_at": _iso(self.learned_at),
            "portfolio": self.portfolio,
            "username": self.username,
            "retired": self.retired,
            "retired_at": _iso(self.retired_at),
            "retired_by": self.retired_by,
            "opted_out": self.opt_out is not None,
            "opt_out_reason": self.opt_out,
        }


@dataclass(frozen=True, slots=True)
class Former:
    """The asked identifier was this person's until a change retired it: it is not
    sent to as theirs any more."""

    person_key: str | None  # their key now; None when the book holds none of them
    identifiers: tuple[str, ...]  # their current identifiers
    retired_at: datetime
    retired_by: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "person_key": self.person_key,
            "identifiers": list(self.identifiers),
            "retired_at": _iso(self.retired_at),
            "retired_by": self.retired_by,
        }


@dataclass(frozen=True, slots=True)
class CampaignMessage:
    campaign_id: int
    campaign_name: str
    destination: str  # the identifier it was sent to
    status: str
    updated_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "campaign_name": self.campaign_name,
            "destination": self.destination,
            "status": self.status,
            "updated_at": _iso(self.updated_at),
        }


@dataclass(frozen=True, slots=True)
class Echoed:
    """A message the business sent the person from the WhatsApp Business app."""

    sent_at: datetime
    kind: str
    business_number: str  # '' when the echo did not say
    recipient: str
    original_message_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sent_at": _iso(self.sent_at),
            "kind": self.kind,
            "business_number": self.business_number,
            "recipient": self.recipient,
            "original_message_id": self.original_message_id,
        }


@dataclass(frozen=True, slots=True)
class Person:
    asked: str
    #: every link of the person: current ones first (phone numbers first), then the
    #: retired ones, newest retirement first; the asked identifier is among them even
    #: when the book holds it nowhere
    identifiers: tuple[KnownIdentifier, ...]
    messages: tuple[CampaignMessage, ...]
    echoes: tuple[Echoed, ...]
    #: the person's key now: the one the asked identifier belongs to, else the one it
    #: was last retired from; None when the book knows neither
    person_key: str | None = None
    #: the asked identifier's retirements, newest first: whose it was
    formerly: tuple[Former, ...] = ()

    @property
    def known(self) -> bool:
        """The dispatcher holds anything of them at all."""
        learned = any(i.learned_from is not None for i in self.identifiers)
        return learned or bool(self.messages or self.echoes or self.formerly)

    @property
    def linked_now(self) -> bool:
        """The asked identifier is one of a person's current links."""
        return any(
            i.identifier == self.asked and i.learned_from is not None and not i.retired
            for i in self.identifiers
        )

    @property
    def usernames(self) -> tuple[str, ...]:
        """The usernames seen with the person's identifiers, current ones first."""
        return tuple(dict.fromkeys(i.username for i in self.identifiers if i.username))

    @property
    def opted_out(self) -> tuple[KnownIdentifier, ...]:
        """The person's current identifiers on the opt-out list: any one keeps the
        whole person from every campaign (opt-outs are matched through the book)."""
        return tuple(
            i for i in self.identifiers
            if i.opt_out is not None and i.learned_from is not None and not i.retired
        )  # fmt: skip

    def as_dict(self) -> dict[str, Any]:
        """One JSON object for scripts: stable keys, ISO 8601 times."""
        return {
            "asked": self.asked,
            "known": self.known,
            "linked_now": self.linked_now,
            "person_key": self.person_key,
            "opted_out": bool(self.opted_out),
            "usernames": list(self.usernames),
            "identifiers": [i.as_dict() for i in self.identifiers],
            "formerly": [f.as_dict() for f in self.formerly],
            "messages": [m.as_dict() for m in self.messages],
            "echoes": [e.as_dict() for e in self.echoes],
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


def identifier_of(text: str, region: str | None = None) -> str | None:
    """An identifier as the dispatcher stores it: a BSUID or parent BSUID as written, a
    phone number in E.164 (national with ``region``, or international); None when it is
    neither."""
    written = text.strip()
    if book.kind_of(written) in ("bsuid", "parent_bsuid"):
        return written
    return normalise_msisdn(written, region)


def look_up(session: Session, identifier: str, *, limit: int = 20) -> Person:
    """What is known of the person ``identifier`` (as ``identifier_of`` writes it)
    belongs to now, or was last retired from: at most ``limit`` campaign messages and
    ``limit`` echoes, newest first."""
    now = session.get(Identity, identifier)
    retirements = sorted(
        session.scalars(select(RetiredIdentity).where(RetiredIdentity.identifier == identifier)),
        key=lambda r: (aware(r.retired_at), r.id),
        reverse=True,
    )
    formerly: list[Former] = []
    for row in retirements:
        key = _person_now(session, row.person_key)
        formerly.append(
            Former(key, _current_of(session, key), aware(row.retired_at), row.retired_by)
        )
    person_key = now.person_key if now is not None else next(
        (f.person_key for f in formerly if f.person_key is not None), None
    )  # fmt: skip
    current = _current_rows(session, person_key)
    retired = _retired_rows(session, person_key)
    if person_key is None:  # nobody's now, and its former persons are no longer held
        retired = retirements
    held = [r.identifier for r in current] + [r.identifier for r in retired]
    identifiers = sorted({identifier, *held})
    opted = {
        opted_out: reason
        for opted_out, reason in session.execute(
            select(Suppression.identifier, Suppression.reason).where(
                Suppression.identifier.in_(identifiers)
            )
        )
    }
    known = [_link(r, opted) for r in sorted(current, key=lambda r: _book_order(r.identifier))]
    known += [_link(r, opted) for r in retired]
    if not any(k.identifier == identifier for k in known):
        kind = book.kind_of(identifier) or "unknown"
        known.insert(0, KnownIdentifier(identifier, kind, opt_out=opted.get(identifier)))
    windows = _windows(session, identifier, current, retired)
    messages = session.execute(
        select(
            Message.campaign_id,
            Campaign.name,
            Message.destination,
            Message.status,
            Message.updated_at,
        )
        .select_from(Campaign)
        .join(
            Message,
            and_(
                Message.campaign_id == Campaign.id,
                _during(windows, Campaign.created_at, Message.identity_key),
            ),
        )
        .order_by(Message.updated_at.desc(), Message.id.desc())
        .limit(limit)
    ).all()
    echoes = session.scalars(
        select(WhatsAppEcho)
        .where(
            _during(
                windows,
                WhatsAppEcho.sent_at,
                WhatsAppEcho.recipient,
                WhatsAppEcho.recipient_user_id,
            )
        )
        .order_by(WhatsAppEcho.sent_at.desc(), WhatsAppEcho.id.desc())
        .limit(limit)
    ).all()
    return Person(
        asked=identifier,
        identifiers=tuple(known),
        messages=tuple(
            CampaignMessage(m.campaign_id, m.name, m.destination, m.status, aware(m.updated_at))
            for m in messages
        ),
        echoes=tuple(
            Echoed(aware(e.sent_at), e.kind, e.business_number, e.recipient, e.original_message_id)
            for e in echoes
        ),
        person_key=person_key,
        formerly=tuple(formerly),
    )


def _person_now(session: Session, key: str) -> str | None:
    """``key`` when the book holds a person under it now (a key is one of its person's
    identifiers), else None: the person has no current identifier left."""
    return session.scalar(select(Identity.person_key).where(Identity.identifier == key))


def _current_rows(session: Session, person_key: str | None) -> list[Identity]:
    if person_key is None:
        return []
    return list(session.scalars(select(Identity).where(Identity.person_key == person_key)))


def _current_of(session: Session, person_key: str | None) -> tuple[str, ...]:
    rows = _current_rows(session, person_key)
    return tuple(sorted((r.identifier for r in rows), key=_book_order))


def _retired_rows(session: Session, person_key: str | None) -> list[RetiredIdentity]:
    """The person's retired links, newest retirement first."""
    if person_key is None:
        return []
    rows = session.scalars(
        select(RetiredIdentity).where(RetiredIdentity.person_key == person_key)
    ).all()
    return sorted(rows, key=lambda r: (aware(r.retired_at), r.id), reverse=True)


Window = tuple[datetime | None, datetime | None]  # (after, until); None: open


def _windows(
    session: Session, asked: str, current: list[Identity], retired: list[RetiredIdentity]
) -> dict[str, list[Window]]:
    """When each identifier was the person's, for their messages and echoes: a current
    one since it was last retired from somebody else (a recycled number's earlier
    messages are its former owner's), a retired one until its retirement."""
    mine = {r.id for r in retired}
    held = [r.identifier for r in current]
    before: dict[str, datetime] = {}
    for row in session.scalars(select(RetiredIdentity).where(RetiredIdentity.identifier.in_(held))):
        if row.id not in mine:
            when = aware(row.retired_at)
            before[row.identifier] = max(when, before.get(row.identifier, when))
    windows: dict[str, list[Window]] = {i: [(before.get(i), None)] for i in held}
    for row in retired:
        windows.setdefault(row.identifier, []).append((None, aware(row.retired_at)))
    windows.setdefault(asked, [(None, None)])
    return windows


def _during(
    windows: dict[str, list[Window]],
    moment: InstrumentedAttribute[datetime],
    *columns: InstrumentedAttribute[str] | InstrumentedAttribute[str | None],
) -> ColumnElement[bool]:
    """Rows naming an identifier in ``columns`` at a ``moment`` it was the person's."""
    return or_(
        *(
            and_(
                column == identifier,
                *([moment > after] if after else []),
                *([moment <= until] if until else []),
            )
            for identifier, spans in windows.items()
            for after, until in spans
            for column in columns
        )
    )


def _link(row: Identity | RetiredIdentity, opted: dict[str, str]) -> KnownIdentifier:
    retired = row if isinstance(row, RetiredIdentity) else None
    return KnownIdentifier(
        identifier=row.identifier,
        kind=row.kind,
        learned_from=row.learned_from,
        learned_at=aware(row.learned_at),
        source=row.source or "",
        portfolio=row.portfolio or "",
        username=row.username,
        retired_at=aware(retired.retired_at) if retired else None,
        retired_by=retired.retired_by if retired else None,
        opt_out=opted.get(row.identifier),
    )


_KIND_ORDER = {"msisdn": 0, "bsuid": 1, "parent_bsuid": 2}


def _book_order(identifier: str) -> tuple[int, str]:
    """Phone numbers first, then BSUIDs, then parent BSUIDs (as the book writes them)."""
    return _KIND_ORDER.get(book.kind_of(identifier) or "", 3), identifier
