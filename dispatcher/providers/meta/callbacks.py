"""Meta's webhooks read: one ``whatsapp_business_account`` body into what it holds.

One body may carry several entries, each several changes, each a ``value`` with any of
(seed 002 'Messaging Webhooks', seed 000 for the BSUID fields, seed 001 for shared
contacts, seed 003 for echoes):

* ``statuses``: sent / delivered / read / failed reports on our messages, with
  ``errors[]``, ``pricing``, ``recipient_id`` / ``recipient_user_id`` /
  ``parent_recipient_user_id`` and our ``biz_opaque_callback_data`` echoed back;
* ``messages``: what people sent (text, buttons, interactive replies, media, shared
  ``contacts``, ...), and ``system`` messages (``user_changed_number``,
  ``user_changed_user_id``);
* ``contacts``: who a status or message is about (``wa_id``, ``user_id``,
  ``parent_user_id``, ``profile.username``);
* ``message_echoes`` (field ``smb_message_echoes``): what the business sent from the
  WhatsApp Business app; never one of our campaign's messages;
* ``user_id_update`` (field of that name, seed 000): a user's new BSUID;
* ``message_template_status_update``, ``phone_number_quality_update`` and
  ``account_update``: a template paused or disabled, the number flagged for low quality,
  the account disabled or restricted. The seeds are silent on these three; Meta's public
  webhook reference gives their shapes. They become provider-neutral ``SenderEvent``s.

Statuses, people's messages, echoes, identity changes (``system`` messages and
``user_id_update``, as provider-neutral ``IdentityChange`` records the identity book
applies by its own rules) and the usernames of ``contacts[]`` become the ``Callback``
the stages apply; the rest is parsed into the typed records below (``parse_webhook``)
and kept in the stored body.

Read by hand from ``orjson``'s dicts, not by a model per status: a campaign of a
thousand messages a second brings about three thousand statuses a second to one
receiver. ``read_webhook`` reads only what the stages apply, and a status only its ids
and state until the applier asks for more (measured: about 7 us a status body for the
receiver, as LINK's DLR; 15 us with every field the applier reads).

A value of the wrong type is read as absent; an entry that makes no sense (a status
without an id) is skipped, the rest of the body still read. The body as a whole is
refused (``InvalidReport``) only when it is not JSON, is not a
``whatsapp_business_account`` body, or holds no field the dispatcher reads.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from dispatcher.providers.base import (
    MAX_ID_CHARS,
    Callback,
    IdentityChange,
    InvalidReport,
    Pricing,
    ReplyContext,
    SenderEvent,
    Username,
)
from dispatcher.providers.link.models import choice_replies
from dispatcher.status import MessageStatus

__all__ = [
    "Contact",
    "Echo",
    "MetaIncoming",
    "MetaStatus",
    "SystemChange",
    "UserIdUpdate",
    "Webhook",
    "parse_webhook",
    "read_webhook",
]

#: The ``object`` of every Cloud API webhook (seed 002: "the object is always
#: whatsapp_business_account").
OBJECT = "whatsapp_business_account"
#: The change fields read here; any other (calls, history, user_preferences, ...) is
#: kept in the stored body only.
FIELDS = frozenset({"messages", "smb_message_echoes", "user_id_update"})
#: The change fields about the sender itself (Meta's webhook reference; not in the seeds).
SENDER_FIELDS = frozenset(
    {"message_template_status_update", "phone_number_quality_update", "account_update"}
)

# Seed 002 'Message Status Updates'; "deleted" is the On-Premises API's (seed 002
# 'Status: Message Deleted': the Cloud API sends none, it is read in case).
_STATUSES = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "read": MessageStatus.READ,
    "failed": MessageStatus.FAILED,
    "deleted": MessageStatus.DELETED,
}
# Message types that are not a person writing to the business: they open no care
# window and carry no reply. ``system`` (seed 002 'User Changed Number Notification',
# seed 000 user_changed_user_id) is WhatsApp's; ``revoke`` (seed 000) deletes a
# message the person sent earlier.
_NOT_WRITTEN = frozenset({"system", "revoke"})
# Seed 000: a contacts message answering a REQUEST_CONTACT_INFO button has ``origin``
# "contact_request"; its phone is the sender's own. Any other shared card is someone
# else's number and links nobody.
_OWN_CONTACT = "contact_request"
# Seed 000 ``user_changed_user_id``: "User <NAME> changed from <OLD_BSUID> to
# <NEW_BSUID>"; the last "changed from" of the body (a name may hold the words).
_CHANGED_FROM = re.compile(r"changed from (\S+) to \S+?\.?\s*$")
_DESCRIPTION_CHARS = 1000


@dataclass(frozen=True, slots=True)
class Contact:
    """An entry of a value's ``contacts[]`` (seed 000): who a status or message is
    about, as WhatsApp names them."""

    wa_id: str | None
    user_id: str | None
    parent_user_id: str | None
    username: str | None
    name: str | None

    @property
    def identifiers(self) -> tuple[str | None, ...]:
        return (self.wa_id, self.user_id, self.parent_user_id)


class MetaStatus:
    """A ``statuses[]`` entry: satisfies ``base.StatusReport``. What the receiver needs
    to store it (ids, status) is read at once; the rest when the applier asks."""

    __slots__ = (
        "_contacts",
        "_entry",
        "_named",
        "message_id",
        "message_status",
        "ref_id",
        "status",
    )
    # Meta has no result code of its own (LINK's resultCode); the WhatsApp code says all.
    result_code: None = None
    is_request_failure = False

    def __init__(self, entry: Mapping[str, Any], contacts: list[dict[str, Any]]) -> None:
        self._entry = entry
        self._contacts = contacts
        self._named: tuple[str | None, ...] | None = None
        self.message_id: str | None = _id(entry.get("id"))
        self.ref_id: str | None = _id(entry.get("biz_opaque_callback_data"))
        status = entry.get("status")
        self.status: str | None = status if isinstance(status, str) else None
        self.message_status: MessageStatus | None = _STATUSES.get(self.status or "")

    @property
    def timestamp(self) -> datetime | None:
        return _unix(self._entry.get("timestamp"))

    @property
    def whatsapp_error_code(self) -> int | None:
        return _first_error(self._entry.get("errors"))[0]

    @property
    def result_description(self) -> str | None:
        return _first_error(self._entry.get("errors"))[1]

    @property
    def pricing(self) -> Pricing | None:
        return _pricing(self._entry.get("pricing"))

    @property
    def whatsapp_message_id(self) -> str | None:
        """The wamid: a reply's ``context.id`` names it."""
        return self.message_id

    @property
    def contact(self) -> Contact | None:
        """The value's contact this status is about (seed 000: sent, delivered and read
        statuses come with one; failed ones without)."""
        found = _contact_of(self._contacts, self._recipient())
        return _contact(found) if found is not None else None

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        """``recipient_id``, ``recipient_user_id``, ``parent_recipient_user_id`` and
        the identifiers of its contact (seed 000: a send to a number names its BSUID in
        ``contacts[]`` only)."""
        if self._named is None:
            recipient = self._recipient()
            found = _contact_of(self._contacts, recipient)
            self._named = _named(recipient + _identifiers(found))
        return self._named

    def _recipient(self) -> tuple[str | None, ...]:
        entry = self._entry
        if entry.get("recipient_type") == "group":  # seed 000: a group's participant
            own = (
                entry.get("recipient_participant_id"),
                entry.get("recipient_participant_user_id"),
                entry.get("recipient_participant_parent_user_id"),
            )
        else:
            own = (
                entry.get("recipient_id"),
                entry.get("recipient_user_id"),
                entry.get("parent_recipient_user_id"),
            )
        return tuple(v if isinstance(v, str) else None for v in own)

    def __repr__(self) -> str:  # no identifiers: reprs end up in logs
        return f"MetaStatus({self.status!r}, code={self.whatsapp_error_code})"


class MetaIncoming:
    """A ``messages[]`` entry a person sent: satisfies ``base.IncomingReport``."""

    __slots__ = (
        "business_number",
        "contact",
        "message",
        "message_id",
        "named_identifiers",
        "timestamp",
        "type",
    )

    def __init__(
        self,
        message: Mapping[str, Any],
        contacts: list[dict[str, Any]],
        business_number: str | None,
    ) -> None:
        self.message = message
        self.type: str = (_text(message.get("type")) or _content_kind(message)).lower()
        self.message_id: str | None = _text(message.get("id"))
        self.timestamp: datetime | None = _unix(message.get("timestamp"))
        self.business_number: str | None = business_number
        sender = tuple(
            v if isinstance(v, str) else None
            for v in (
                message.get("from"),
                message.get("from_user_id"),
                message.get("from_parent_user_id"),
            )
        )
        found = _contact_of(contacts, sender)
        self.contact: Contact | None = _contact(found) if found is not None else None
        self.named_identifiers: tuple[str | None, ...] = _named(
            sender + _identifiers(found) + self._own_phones()
        )

    def replies(self) -> Iterator[str]:
        """What the person typed or chose: the text, a template button's text and
        payload, an interactive button's or list row's title (seed 002)."""
        message = self.message
        text = message.get("text")
        if isinstance(text, dict):
            yield from _strings(text.get("body"))
        yield from choice_replies(message)

    @property
    def reply_context(self) -> ReplyContext | None:
        """``context.id`` names the wamid of the message answered (seed 002 'Received
        Callback from a Quick Reply Button', 'Product Inquiry Messages'), with the
        choice: a template button's payload and text, an interactive reply's id and
        title."""
        context = self.message.get("context")
        wa_id = _text(context.get("id")) if isinstance(context, dict) else None
        if wa_id is None:
            return None
        button = self.message.get("button")
        if isinstance(button, dict):
            return ReplyContext(
                wa_id, self.type, _text(button.get("payload")), _text(button.get("text"))
            )
        interactive = self.message.get("interactive")
        if isinstance(interactive, dict):
            for kind in ("button_reply", "list_reply"):
                choice = interactive.get(kind)
                if isinstance(choice, dict):
                    return ReplyContext(
                        wa_id, self.type, _text(choice.get("id")), _text(choice.get("title"))
                    )
        return ReplyContext(wa_id, self.type)

    @property
    def shares_own_number(self) -> bool:
        """A contacts message answering the business's REQUEST_CONTACT_INFO (seed 000:
        ``origin`` "contact_request"): its phone is the sender's own."""
        return self.type == "contacts" and self.message.get("origin") == _OWN_CONTACT

    def _own_phones(self) -> tuple[str | None, ...]:
        """The sender's own number, shared at the business's request (seed 000
        REQUEST_CONTACT_INFO: ``origin`` "contact_request")."""
        if not self.shares_own_number:
            return ()
        found: list[str | None] = []
        for card in _dicts(self.message.get("contacts")):
            for phone in _dicts(card.get("phones")):
                found.append(_text(phone.get("wa_id")))
                found.append(_digits(phone.get("phone")))
        return tuple(found)

    def __repr__(self) -> str:
        return f"MetaIncoming({self.type!r})"


@dataclass(frozen=True, slots=True)
class SystemChange:
    """A ``system`` message: the user changed number (``user_changed_number``, seed
    002: ``new_wa_id``) or BSUID (``user_changed_user_id``, seed 000: ``wa_id``,
    ``user_id``, ``parent_user_id`` are the new ones). Applied by the identity book's
    rules for changes, not by linking."""

    kind: str
    message_id: str | None
    timestamp: datetime | None
    #: who it was: ``from`` (old number), ``from_user_id`` and ``from_parent_user_id``
    #: as the message gives them
    old: tuple[str | None, ...]
    new_wa_id: str | None
    new_user_id: str | None
    new_parent_user_id: str | None
    body: str | None = None  # "User <NAME> changed from <OLD> to <NEW>"


@dataclass(frozen=True, slots=True)
class Echo:
    """A message the business sent from the WhatsApp Business app (seed 003): to
    ``to`` / ``to_user_id`` / ``to_parent_user_id`` (seed 000); ``original_message_id``
    for an edit or revoke. Satisfies ``base.EchoReport``."""

    message_id: str | None
    type: str
    timestamp: datetime | None
    business_number: str | None
    to: tuple[str | None, ...]
    original_message_id: str | None

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        return self.to


@dataclass(frozen=True, slots=True)
class UserIdUpdate:
    """A ``user_id_update`` (seed 000): the user of ``wa_id`` has a new BSUID."""

    wa_id: str | None
    previous_user_id: str | None
    current_user_id: str | None
    previous_parent_user_id: str | None
    current_parent_user_id: str | None
    timestamp: datetime | None


@dataclass(frozen=True, slots=True)
class Webhook:
    """Everything a body holds, by kind."""

    statuses: tuple[MetaStatus, ...] = ()
    incoming: tuple[MetaIncoming, ...] = ()
    contacts: tuple[Contact, ...] = ()
    system_changes: tuple[SystemChange, ...] = ()
    echoes: tuple[Echo, ...] = ()
    user_id_updates: tuple[UserIdUpdate, ...] = ()
    #: the system changes and user id updates as the identity book applies them
    changes: tuple[IdentityChange, ...] = ()
    usernames: tuple[Username, ...] = ()
    #: the change fields read here, and those present but not read (each sorted)
    fields: tuple[str, ...] = ()
    other_fields: tuple[str, ...] = ()
    #: templates, quality and account events about the sender
    sender_events: tuple[SenderEvent, ...] = ()


def read_webhook(body: bytes) -> Callback:
    """The statuses, people's messages, echoes, identity changes and usernames of a
    webhook body (what the stages apply, read without the rest); ``InvalidReport`` when
    it is not a Cloud API webhook, or holds only fields the dispatcher does not read.
    Echoes, system messages and user id updates are rare: a change without them costs
    a look for a key; a contact one look for a username."""
    statuses: list[MetaStatus] = []
    incoming: list[MetaIncoming] = []
    echoes: list[Echo] = []
    changes: list[IdentityChange] = []
    usernames: list[Username] = []
    events: list[SenderEvent] = []
    other: set[str] = set()
    read = False
    for entry, field, value in _entries(body):
        if field == "messages":
            _read_messages(value, statuses, incoming, changes, usernames)
        elif field in SENDER_FIELDS:
            _read_sender_event(entry, field, value, events)
        elif field == "user_id_update":
            _read_user_id_updates(value, changes, usernames)
        elif field not in FIELDS:
            other.add(field)
            continue
        read = True
        if "message_echoes" in value:
            _read_echoes(value, echoes)
    if not read:
        if other:
            raise InvalidReport(f"field {', '.join(sorted(other))}: not one the dispatcher reads")
        raise InvalidReport("entry: no change in it")
    return Callback(statuses, incoming, echoes, changes, usernames, events)


def parse_webhook(body: bytes) -> Webhook:
    """Everything a webhook body holds (see the module's docstring)."""
    parts = _Parts()
    for entry, field, value in _entries(body):
        if field in SENDER_FIELDS:
            parts.fields.add(field)
            _read_sender_event(entry, field, value, parts.sender_events)
        elif field in FIELDS:
            parts.fields.add(field)
            parts.read(field, value)
        else:
            parts.other_fields.add(field)
    return parts.webhook()


def _entries(body: bytes) -> Iterator[tuple[dict[str, Any], str, dict[str, Any]]]:
    """Each change's entry, field and value, every entry's in order; ``InvalidReport``
    for a body that is not a Cloud API webhook."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidReport(f"not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("object") != OBJECT:
        raise InvalidReport(f"object: not {OBJECT!r}")
    entries = data.get("entry")
    if not isinstance(entries, list):
        raise InvalidReport("entry: a list is required")
    for entry in _dicts(entries):
        for change in _dicts(entry.get("changes")):
            field = change.get("field")
            value = change.get("value")
            if isinstance(field, str) and isinstance(value, dict):
                yield entry, field, value


def _read_messages(
    value: Mapping[str, Any],
    statuses: list[MetaStatus],
    incoming: list[MetaIncoming],
    changes: list[IdentityChange],
    usernames: list[Username],
    system_changes: list[SystemChange] | None = None,
) -> None:
    """A ``messages`` value's statuses, what people wrote, the identity changes of its
    system messages and its contacts' usernames (and its system messages as parsed,
    when asked for)."""
    contacts = list(_dicts(value.get("contacts")))
    _read_usernames(contacts, usernames)
    for status in _dicts(value.get("statuses")):
        report = MetaStatus(status, contacts)
        if report.message_id is not None:
            statuses.append(report)
    messages = value.get("messages")
    if not messages:
        return
    business = _business(value)
    for message in _dicts(messages):
        kind = message.get("type")
        if kind == "system":
            parsed = _system_change(message)
            change = _identity_change(parsed, business)
            if change is not None:
                changes.append(change)
            if system_changes is not None:
                system_changes.append(parsed)
        elif kind not in _NOT_WRITTEN:
            incoming.append(MetaIncoming(message, contacts, business))


def _read_user_id_updates(
    value: Mapping[str, Any], changes: list[IdentityChange], usernames: list[Username]
) -> None:
    """A ``user_id_update`` value (seed 000): each update's previous BSUID and parent
    BSUID are retired for the current ones; ``wa_id`` is unchanged."""
    _read_usernames(list(_dicts(value.get("contacts"))), usernames)
    business = _business(value)
    for update in _dicts(value.get("user_id_update")):
        parsed = _user_id_update(update)
        changes.append(
            _settled(
                "user_id_update",
                old=(parsed.previous_user_id, parsed.previous_parent_user_id),
                new=(parsed.current_user_id, parsed.current_parent_user_id),
                same=(parsed.wa_id,),
                at=parsed.timestamp,
                business=business,
            )
        )


def _read_usernames(contacts: list[dict[str, Any]], usernames: list[Username]) -> None:
    """Each contact's ``profile.username`` (seed 000: only when the user adopted one),
    with the identifiers it names."""
    for contact in contacts:
        profile = contact.get("profile")
        if profile.__class__ is dict and "username" in profile:
            username = _text(profile["username"])
            if username is not None:
                usernames.append((_identifiers(contact), username))


def _identity_change(system: SystemChange, business: str | None) -> IdentityChange | None:
    """What a ``system`` message changes, None for a kind that changes nobody.

    ``user_changed_number`` (seed 002): ``from`` is the old number, ``new_wa_id`` the
    new one, the BSUIDs the message names stay. ``user_changed_user_id`` (seed 000):
    ``system.wa_id`` / ``user_id`` / ``parent_user_id`` are the new ones; the old BSUID
    is ``from_user_id``, else the one the body names ("changed from <OLD> to <NEW>");
    the old number is ``from`` when it is not the new one.
    """
    sender, user_id, parent = system.old
    kind, at = system.kind, system.timestamp
    if kind == "user_changed_number":
        return _settled(kind, (sender,), (system.new_wa_id,), (user_id, parent), at, business)
    if kind == "user_changed_user_id":
        said = _CHANGED_FROM.search(system.body) if system.body else None
        old_user_id = user_id or (said.group(1) if said else None)
        new = (system.new_wa_id, system.new_user_id, system.new_parent_user_id)
        # ``from`` is the old number when it is not the new one (then it is the same)
        return _settled(kind, (old_user_id, parent, sender), new, (), at, business)
    return None


def _settled(
    event: str,
    old: tuple[str | None, ...],
    new: tuple[str | None, ...],
    same: tuple[str | None, ...],
    at: datetime | None,
    business: str | None,
) -> IdentityChange:
    """The change with the identifiers named both before and after counted as same."""
    both = tuple(v for v in new if v and v in old)
    return IdentityChange(
        event,
        _named(tuple(v for v in old if v not in both)),
        _named(tuple(v for v in new if v not in both)),
        _named(same + both),
        at,
        business,
    )


# What a message may carry, by its ``type`` (seed 002's inbound examples).
_CONTENTS = ("text", "button", "interactive", "image", "video", "audio", "document",
             "sticker", "reaction", "location", "contacts", "order")  # fmt: skip


def _content_kind(message: Mapping[str, Any]) -> str:
    """The type of a message that does not say (seed 002's contacts and location
    examples): the content it carries."""
    return next((kind for kind in _CONTENTS if kind in message), "unknown")


def _business(value: Mapping[str, Any]) -> str | None:
    """The business number a value is about: ``metadata.display_phone_number``."""
    metadata = value.get("metadata")
    return _e164(metadata.get("display_phone_number")) if isinstance(metadata, dict) else None


class _Parts:
    """What a body's changes add up to, as they are read."""

    def __init__(self) -> None:
        self.statuses: list[MetaStatus] = []
        self.incoming: list[MetaIncoming] = []
        self.contacts: list[dict[str, Any]] = []
        self.system_changes: list[SystemChange] = []
        self.echoes: list[Echo] = []
        self.user_id_updates: list[UserIdUpdate] = []
        self.changes: list[IdentityChange] = []
        self.usernames: list[Username] = []
        self.fields: set[str] = set()
        self.other_fields: set[str] = set()
        self.sender_events: list[SenderEvent] = []

    def read(self, field: str, value: Mapping[str, Any]) -> None:
        self.contacts.extend(_dicts(value.get("contacts")))
        if field == "user_id_update":
            self.user_id_updates.extend(
                _user_id_update(u) for u in _dicts(value.get("user_id_update"))
            )
            _read_user_id_updates(value, self.changes, self.usernames)
            return
        _read_echoes(value, self.echoes)
        if field == "messages":
            _read_messages(
                value, self.statuses, self.incoming, self.changes, self.usernames,
                self.system_changes,
            )  # fmt: skip

    def webhook(self) -> Webhook:
        return Webhook(
            tuple(self.statuses),
            tuple(self.incoming),
            tuple(_contact(c) for c in self.contacts),
            tuple(self.system_changes),
            tuple(self.echoes),
            tuple(self.user_id_updates),
            tuple(self.changes),
            tuple(self.usernames),
            tuple(sorted(self.fields)),
            tuple(sorted(self.other_fields)),
            tuple(self.sender_events),
        )


# -- the sender's own events (Meta's webhook reference; the seeds are silent on them) ----

# ``phone_number_quality_update``: FLAGGED is the number's quality rating dropping to low
# (RED); UNFLAGGED its recovery. Other events (UPGRADE, DOWNGRADE, ONBOARDING,
# THROUGHPUT_UPGRADE) change the messaging limit or the throughput, not the quality.
_QUALITY_OF_EVENT = {"FLAGGED": "RED", "UNFLAGGED": "GREEN"}
# ``account_update``: the events after which the account cannot start conversations.
_GONE = {
    "ACCOUNT_DELETED": "the WhatsApp Business Account was deleted",
    "ACCOUNT_OFFBOARDED": "the WhatsApp Business Account was offboarded (device change or "
    "phone number re-registration)",
}
# ``restriction_info[].restriction_type``: a restriction that stops a campaign.
_NO_BUSINESS_INITIATED = "RESTRICTED_BIZ_INITIATED_MESSAGING"


def _read_sender_event(
    entry: Mapping[str, Any], field: str, value: Mapping[str, Any], events: list[SenderEvent]
) -> None:
    """One sender change, read into ``events`` when it says enough to act on: the
    entry's ``id`` is the WhatsApp Business Account, its ``time`` when it happened."""
    account = _text(entry.get("id")) or _number_text(entry.get("id"))
    at = _unix(entry.get("time"))
    event = (_text(value.get("event")) or "").upper()
    if not event:
        return
    if field == "message_template_status_update":
        name = _text(value.get("message_template_name"))
        if name is None:
            return
        events.append(SenderEvent(
            "template", event, at, account,
            template_name=name,
            template_language=_text(value.get("message_template_language")),
            template_status=event,
            detail=_template_detail(value),
        ))  # fmt: skip
    elif field == "phone_number_quality_update":
        limit = _text(value.get("max_daily_conversations_per_business")) or _text(
            value.get("current_limit")
        )
        events.append(SenderEvent(
            "quality", event, at, account,
            business_number=_e164(value.get("display_phone_number")),
            quality=_QUALITY_OF_EVENT.get(event),
            limit=limit,
        ))  # fmt: skip
    else:  # account_update
        blocked, detail = _account_blocked(event, value)
        events.append(SenderEvent(
            "account", event, at, account,
            # an older form of the event names the number; without it, every number
            business_number=_e164(value.get("phone_number")),
            blocked=blocked,
            detail=detail,
        ))  # fmt: skip


def _template_detail(value: Mapping[str, Any]) -> str:
    """What the event says of why: ``reason`` (NONE is none), ``other_info`` (title and
    description, e.g. a first or second pause), ``disable_info.disable_date``."""
    said: list[str] = []
    reason = _text(value.get("reason"))
    if reason and reason.upper() != "NONE":
        said.append(reason)
    other = value.get("other_info")
    if isinstance(other, dict):
        said.extend(s for s in (_text(other.get("title")), _text(other.get("description"))) if s)
    disable = value.get("disable_info")
    if isinstance(disable, dict):
        when = _unix(disable.get("disable_date"))
        if when is not None:
            said.append(f"disabled on {when:%Y-%m-%d}")
    return "; ".join(said)[:_DESCRIPTION_CHARS]


def _account_blocked(event: str, value: Mapping[str, Any]) -> tuple[str | None, str]:
    """Why the account can no longer start conversations after ``event`` (None: it
    still can), and the event's detail: DISABLED_UPDATE with ``ban_info.waba_ban_state``
    DISABLE, an ACCOUNT_RESTRICTION of business-initiated messaging, a deleted or
    offboarded account. SCHEDULE_FOR_DISABLE and REINSTATE, violations and other
    restrictions stop nothing."""
    if event in _GONE:
        return _GONE[event], ""
    if event == "DISABLED_UPDATE":
        ban = value.get("ban_info")
        ban = ban if isinstance(ban, dict) else {}
        state = (_text(ban.get("waba_ban_state")) or "").upper()
        date = _text(ban.get("waba_ban_date"))
        detail = f"ban state {state or 'not given'}" + (f" ({date})" if date else "")
        if state == "DISABLE":
            return "the WhatsApp Business Account is disabled" + (
                f" since {date}" if date else ""
            ), detail
        return None, detail
    if event == "ACCOUNT_RESTRICTION":
        for restriction in _dicts(value.get("restriction_info")):
            if _text(restriction.get("restriction_type")) == _NO_BUSINESS_INITIATED:
                until = _unix(restriction.get("expiration"))
                note = f" until {until:%Y-%m-%d %H:%M} UTC" if until else ""
                return f"business-initiated messaging is restricted{note}", _NO_BUSINESS_INITIATED
        return None, "restrictions that do not stop a campaign"
    if event == "ACCOUNT_VIOLATION":
        info = value.get("violation_info")
        kind = _text(info.get("violation_type")) if isinstance(info, dict) else None
        return None, f"violation {kind}" if kind else ""
    return None, ""


def _number_text(value: object) -> str | None:
    """An id Meta may write as a JSON number (``message_template_id``)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def _contact(entry: Mapping[str, Any]) -> Contact:
    profile = entry.get("profile")
    profile = profile if isinstance(profile, dict) else {}
    return Contact(
        _text(entry.get("wa_id")),
        _text(entry.get("user_id")),
        _text(entry.get("parent_user_id")),
        _text(profile.get("username")),
        _text(profile.get("name")),
    )


def _contact_of(
    contacts: list[dict[str, Any]], own: tuple[str | None, ...]
) -> dict[str, Any] | None:
    """The contact a status or message is about: the value's only contact (seed 000:
    one a status unless aggregated), else the one sharing an identifier with it."""
    if len(contacts) <= 1:
        return contacts[0] if contacts else None
    named = {v for v in own if v}
    for contact in contacts:
        if named.intersection(_identifiers(contact)):
            return contact
    return None


def _identifiers(contact: Mapping[str, Any] | None) -> tuple[str | None, ...]:
    """A contact's ``wa_id``, ``user_id`` and ``parent_user_id`` as given (seed 000)."""
    if contact is None:
        return ()
    return tuple(
        v if isinstance(v, str) else None
        for v in (contact.get("wa_id"), contact.get("user_id"), contact.get("parent_user_id"))
    )


def _system_change(message: Mapping[str, Any]) -> SystemChange:
    system = message.get("system")
    system = system if isinstance(system, dict) else {}
    return SystemChange(
        kind=_text(system.get("type")) or "unknown",
        message_id=_text(message.get("id")),
        timestamp=_unix(message.get("timestamp")),
        old=(
            _text(message.get("from")),
            _text(message.get("from_user_id")),
            _text(message.get("from_parent_user_id")),
        ),
        # seed 002 names the new number ``new_wa_id``; seed 000's BSUID change ``wa_id``
        new_wa_id=_text(system.get("new_wa_id")) or _text(system.get("wa_id")),
        new_user_id=_text(system.get("user_id")),
        new_parent_user_id=_text(system.get("parent_user_id")),
        body=_text(system.get("body")),
    )


def _read_echoes(value: Mapping[str, Any], echoes: list[Echo]) -> None:
    """A value's ``message_echoes`` (seed 003), from its business number."""
    business = _business(value)
    for echo in _dicts(value.get("message_echoes")):
        echoes.append(_echo(echo, business))


def _echo(echo: Mapping[str, Any], business: str | None) -> Echo:
    kind = _text(echo.get("type")) or "unknown"
    inner = echo.get(kind)
    original = _text(inner.get("original_message_id")) if isinstance(inner, dict) else None
    return Echo(
        message_id=_text(echo.get("id")),
        type=kind,
        timestamp=_unix(echo.get("timestamp")),
        # seed 003: ``from`` is the business's display number, as the metadata's
        business_number=business or _e164(echo.get("from")),
        to=(
            _text(echo.get("to")),
            _text(echo.get("to_user_id")),
            _text(echo.get("to_parent_user_id")),
        ),
        original_message_id=original,
    )


def _user_id_update(update: Mapping[str, Any]) -> UserIdUpdate:
    user_id = update.get("user_id")
    user_id = user_id if isinstance(user_id, dict) else {}
    parent = update.get("parent_user_id")
    parent = parent if isinstance(parent, dict) else {}
    return UserIdUpdate(
        wa_id=_text(update.get("wa_id")),
        previous_user_id=_text(user_id.get("previous")),
        current_user_id=_text(user_id.get("current")),
        previous_parent_user_id=_text(parent.get("previous")),
        current_parent_user_id=_text(parent.get("current")),
        timestamp=_unix(update.get("timestamp")),
    )


def _first_error(errors: object) -> tuple[int | None, str | None]:
    """``errors[0]``'s code, and what it says: title, message and details (seed 002
    'Status: Message Failed', '... Undeliverable')."""
    if not isinstance(errors, list) or not errors or not isinstance(errors[0], dict):
        return None, None
    error = errors[0]
    code = error.get("code")
    data = error.get("error_data")
    details = data.get("details") if isinstance(data, dict) else None
    said = dict.fromkeys(
        s for s in _strings(error.get("title"), error.get("message"), details) if s
    )
    return (
        code if isinstance(code, int) and not isinstance(code, bool) else None,
        "; ".join(said)[:_DESCRIPTION_CHARS] or None,
    )


def _pricing(pricing: object) -> Pricing | None:
    if not isinstance(pricing, dict):
        return None
    billable = pricing.get("billable")
    return Pricing(
        _text(pricing.get("pricing_model")),
        _text(pricing.get("category")),
        _text(pricing.get("type")),
        billable if isinstance(billable, bool) else None,
    )


def _named(values: tuple[str | None, ...]) -> tuple[str | None, ...]:
    """Distinct raw identifiers, first named first."""
    return tuple(dict.fromkeys(v for v in values if v))


def _id(value: object) -> str | None:
    """An id as stored: what does not fit the columns (``MAX_ID_CHARS``) or holds
    control characters cannot be one of ours."""
    text = _text(value)
    if text is None or len(text) > MAX_ID_CHARS or not text.isprintable():
        return None
    return text


def _unix(value: object) -> datetime | None:
    """Meta's timestamps: unix seconds, as a string (an integer read too)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return None


def _digits(value: object) -> str | None:
    """A phone number as WhatsApp ids are written (digits only), from a display
    number like "+1 (415) 555-0829"; None when it has no digits."""
    if not isinstance(value, str):
        return None
    digits = "".join(c for c in value if c.isdigit())
    return digits or None


def _e164(value: object) -> str | None:
    """The business's display number as the campaigns name it (``sender.source``)."""
    digits = _digits(value)
    return f"+{digits}" if digits else None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _dicts(value: object) -> Iterator[dict[str, Any]]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                yield item


def _strings(*values: object) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
