"""Wire models of the LINK WhatsApp Message API (seed 004), camelCase on the wire.

Only the envelope lives here; message bodies are in ``dispatcher.messages``. The
request, answer and callback models satisfy the pipeline's protocols
(``dispatcher.providers.base``) as they are.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from dispatcher.providers.base import Level, Pricing, Priority, ReplyContext, SenderInfo
from dispatcher.providers.link.codes import dlr_status, whatsapp_error_code
from dispatcher.status import MessageStatus

__all__ = [
    "DeliveryReport",
    "EncodedRequest",
    "ErrorResponse",
    "IncomingMessage",
    "Level",
    "MediaErrorResponse",
    "MessageRequest",
    "MessageResponse",
    "PhoneNumberInfo",
    "Priority",
    "choice_replies",
]

# Seed 004 'BSUID - Message Status Notifications' / '... Incoming Message Webhooks (MO)':
# the customParameters that name the person.
_NAMING = ("destination", "whatsappUserId", "whatsappParentUserId")


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(alias=to_camel),
        populate_by_name=True,
        extra="allow",
    )

    def to_wire(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class MessageRequest(_Wire):
    """``POST /messages`` body: every field of the seed's MessageRequest table."""

    model_config = ConfigDict(extra="forbid")
    provider: ClassVar[str] = "link"

    platform_id: str
    platform_partner_id: str
    platform_service_id: str | None = None
    platform_service_type: str | None = None
    platform_transaction_id: str | None = None
    priority: Priority = Priority.NORMAL
    relative_validity_time: int | None = Field(default=None, description="milliseconds")
    absolute_validity_time: datetime | None = None
    event_report_gates: list[str] | None = None
    ref_id: str
    custom_parameters: dict[str, Any] | None = None
    source: str
    destinations: list[str] = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)

    def body(self) -> bytes:
        return orjson.dumps(self.to_wire())


class EncodedRequest:
    """A ``POST /messages`` body encoded once, as the fan-out sends it: a thousand a
    second leave a worker, and a pydantic model built, dumped and encoded per request
    cost more than sending it. The envelope (``Envelope``) is checked once per campaign;
    the messages were validated when the campaign was prepared."""

    __slots__ = ("_body", "destinations", "messages", "ref_id")
    provider = "link"

    def __init__(
        self,
        envelope: Envelope,
        ref_id: str,
        destinations: list[str],
        messages: list[dict[str, Any]],
        valid_until: datetime | None,
        *,
        relative: bool = False,
    ) -> None:
        """``relative``: the validity goes as ``relativeValidityTime``, the milliseconds
        left until ``valid_until`` (LINK counts them from when it takes the request)."""
        if not destinations or not messages:
            raise ValueError("a request needs destinations and messages")
        self.ref_id = ref_id
        self.destinations = destinations
        self.messages = messages
        fields = dict(envelope.fields)
        if valid_until is not None and relative:
            fields["relativeValidityTime"] = _millis_left(valid_until)
        elif valid_until is not None:
            fields["absoluteValidityTime"] = _wire_time(valid_until)
        fields["refId"] = ref_id
        # The campaign's tags (checked once, with the envelope) and the batch's.
        fields["customParameters"] = {**envelope.custom_parameters, BATCH_KEY: ref_id}
        fields["destinations"] = destinations
        fields["messages"] = messages
        self._body = orjson.dumps(fields)

    def body(self) -> bytes:
        return self._body

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = orjson.loads(self._body)
        return wire


#: ``customParameters`` keys every request carries (seed 004 MessageRequest: "Custom
#: parameters specified in the transaction"; DLRs echo them): its campaign and batch.
CAMPAIGN_KEY = "campaignId"
BATCH_KEY = "batchId"
#: Seed 004 'Recognized Custom Parameters': LINK logs the message content, so LINK
#: Support can find a message by it.
LOG_CONTENT_KEY = "ott.whatsapp.logMessageContent"


class Envelope:
    """The fields every request of a campaign shares, validated once as a
    ``MessageRequest`` would validate them; its ``customParameters`` name the campaign
    (each request adds its batch)."""

    __slots__ = ("custom_parameters", "fields")

    def __init__(
        self,
        *,
        platform_id: str,
        platform_partner_id: str,
        priority: Priority,
        event_report_gate: str | None,
        source: str,
        campaign_id: int,
        log_message_content: bool = False,
        platform_service: tuple[str | None, str | None, str | None] = (None, None, None),
    ) -> None:
        """``platform_service``: the optional platformServiceType, platformServiceId and
        platformTransactionId, sent when given."""
        service_type, service_id, transaction_id = platform_service
        # Values are strings, as in every example of the seed (KeyValueTypes) and as
        # DLRs echo them ("ott.whatsapp.logMessageContent": "true", DLR Example#4).
        custom = {CAMPAIGN_KEY: str(campaign_id)}
        if log_message_content:
            custom[LOG_CONTENT_KEY] = "true"
        checked = MessageRequest(
            platform_id=platform_id, platform_partner_id=platform_partner_id,
            priority=priority, source=source, ref_id="-", destinations=["-"],
            messages=[{}], event_report_gates=[event_report_gate] if event_report_gate else None,
            custom_parameters=custom,
            platform_service_type=service_type, platform_service_id=service_id,
            platform_transaction_id=transaction_id,
        ).to_wire()  # fmt: skip
        for name in ("refId", "destinations", "messages"):
            del checked[name]
        self.custom_parameters: dict[str, str] = checked.pop("customParameters")
        self.fields: dict[str, Any] = checked


def _millis_left(until: datetime) -> int:
    """Milliseconds from now to ``until``, at least 1 (a request is never sent already
    expired: ``planner.expire`` takes a message past its validity first)."""
    left = until - datetime.now(UTC if until.tzinfo is not None else None)
    return max(1, int(left.total_seconds() * 1000))


def _wire_time(moment: datetime) -> str:
    """A timestamp as pydantic writes an aware UTC one (``2026-03-03T12:00:00Z``)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    text = moment.replace(tzinfo=None).isoformat()
    return text + "Z" if moment.tzinfo is not None else text


class MessageResponse(_Wire):
    result_code: int
    description: str | None = None
    message_ids: list[str] = Field(default_factory=list)

    # LINK neither holds messages back nor names people in its answer.
    held_for_quality: ClassVar[bool] = False
    named_identifiers: ClassVar[tuple[str | None, ...]] = ()


class ErrorResponse(_Wire):
    result_code: int | None = None
    description: str | None = None
    translated_description: str | None = None


class MediaErrorResponse(_Wire):
    status: int | None = None
    description: str | None = None
    translated_description: str | None = None


class DeliveryReport(_Wire):
    """A Message Status Notification (one callback = one message)."""

    message_id: str | None = None
    ref_id: str | None = None
    message_type: str | None = None
    message_index: int | None = None
    timestamp: datetime | None = None
    result_code: int
    result_description: str | None = None
    gate_custom_parameters: dict[str, Any] | None = None
    custom_parameters: dict[str, Any] | None = None

    @property
    def is_request_failure(self) -> bool:
        """Seed 004: a failed request (nothing sent) has type "request" / index -1."""
        return self.message_type == "request" or self.message_index == -1

    @property
    def message_status(self) -> MessageStatus | None:
        return dlr_status(self.result_code)

    @property
    def whatsapp_error_code(self) -> int | None:
        """The ``(#code)`` of ``resultDescription``, else of ``metaErrorDetails`` (a
        failed request's: of its ``resultDescription`` only)."""
        if self.is_request_failure:
            return whatsapp_error_code(self.result_description)
        details = (self.custom_parameters or {}).get("metaErrorDetails")
        return whatsapp_error_code(
            self.result_description, details if isinstance(details, str) else None
        )

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        return _named(self.custom_parameters) if self.custom_parameters else ()

    @property
    def whatsapp_message_id(self) -> str | None:
        """``customParameters.waMessageId`` (seed 004 DLR Example#1): the id an
        incoming reply's ``context.id`` names."""
        return _text((self.custom_parameters or {}).get("waMessageId"))

    @property
    def pricing(self) -> Pricing | None:
        """The ``pricing*`` customParameters of a sent message (DLR Example#1)."""
        custom = self.custom_parameters
        if not custom or not any(key in custom for key in _PRICING):
            return None
        model, category, kind = (_text(custom.get(key)) for key in _PRICING[:3])
        return Pricing(model, category, kind, _flag(custom.get("pricingBillable")))


class IncomingMessage(_Wire):
    """An incoming (MO) message; only what identity learning and opt-outs need.

    ``source`` is the user's MSISDN or BSUID; ``customParameters`` may add
    ``whatsappUserId`` / ``whatsappParentUserId`` (seed 004 'BSUID - Incoming Message
    Webhooks (MO) updates').

    A shared contact is the sender's own number by this rule: a contacts message
    (``content.message.contacts[].phones[]``, the contacts message format of seed 004)
    answering one of our messages (``context``: the request for their number), from a
    sender named by BSUID only, carrying exactly one phone number. Seed 004
    'Request phone numbers from users who have adopted usernames': the user tapping
    REQUEST_CONTACT_INFO triggers "a corresponding contacts webhook event ... containing
    the user's phone number"; LINK's MO has no ``origin`` to say so (Meta's has). A card
    shared unasked, or by a sender whose number is known, is someone else's: linking it
    would merge a stranger into the sender.
    """

    destination: str | None = None
    source: str
    content: dict[str, Any] | None = None
    message_id: str | None = None
    timestamp: datetime | None = None
    custom_parameters: dict[str, Any] | None = None

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        sender = self._sender()
        own = self._own_phone(sender)
        return (*sender, own) if own else sender

    @property
    def shares_own_number(self) -> bool:
        """The sender shares their own number (see the class's rule)."""
        return self._own_phone(self._sender()) is not None

    def _sender(self) -> tuple[str | None, ...]:
        if not self.custom_parameters:
            return (self.source,)
        return (self.source, *_named(self.custom_parameters))

    def _own_phone(self, sender: tuple[str | None, ...]) -> str | None:
        """The one phone number of a contacts message from a sender known by BSUID only."""
        inner = (self.content or {}).get("message")
        cards = inner.get("contacts") if isinstance(inner, dict) else None
        if not isinstance(cards, list) or any(_is_number(v) for v in sender):
            return None  # no cards, or the sender's number is known: someone else's card
        if not isinstance(inner, dict) or not isinstance(inner.get("context"), dict):
            return None  # shared unasked: whose card it is, nobody says
        phones: set[str] = set()
        for card in cards:
            listed = card.get("phones") if isinstance(card, dict) else None
            for phone in listed if isinstance(listed, list) else ():
                if isinstance(phone, dict):
                    digits = _digits(phone.get("waId")) or _digits(phone.get("phone"))
                    if digits:
                        phones.add(digits)
        return f"+{phones.pop()}" if len(phones) == 1 else None

    @property
    def business_number(self) -> str | None:
        """``destination``: "The number the message is sent to" (seed 004 'Incoming
        Messages'), as E.164."""
        number = "".join((self.destination or "").split())
        if not number:
            return None
        return number if number.startswith("+") else f"+{number}"

    def replies(self) -> Iterator[str]:
        """What the person typed or chose: the text, a template button's text and
        payload, an interactive button's or list row's title."""
        inner = (self.content or {}).get("message")
        if not isinstance(inner, dict):
            return
        yield from _strings(inner.get("text"))
        yield from choice_replies(inner)

    @property
    def reply_context(self) -> ReplyContext | None:
        inner = (self.content or {}).get("message")
        return _reply_context(inner) if isinstance(inner, dict) else None


class PhoneNumberInfo(_Wire):
    """Phone number information API answer."""

    waba_id: str | None = None
    overall_health_status: str | None = None
    level: Level = Level.UNKNOWN
    number_can_send_messages: str | None = None
    max_daily_conversations: str | None = None
    verified_name: str | None = None
    quality_rating: str | None = None
    phone_number_id: str | None = None
    additional_info: list[str] | None = Field(default=None, alias="additional_info")
    errors: list[dict[str, Any]] | None = None

    def sender_info(self) -> SenderInfo:
        """BLOCKED with LINK's error descriptions and solutions; LIMITED with its
        ``additional_info``; the level and the messaging tier as reported."""
        states = (self.overall_health_status, self.number_can_send_messages)
        return SenderInfo(
            level=self.level,
            blocked="; ".join(_described(e) for e in self.errors or [])
            if "BLOCKED" in states
            else None,
            limited="; ".join(self.additional_info or []) if "LIMITED" in states else None,
            tier=self.max_daily_conversations,
            quality=self.quality_rating,
        )


def _described(error: dict[str, Any]) -> str:
    """One BLOCKED error of the phone number API: code, description, solution."""
    keys = ("error_code", "error_description", "possible_solution")
    return " - ".join(str(error[k]) for k in keys if error.get(k))


# Seed 004 DLR Example#1: how WhatsApp prices a sent message.
_PRICING = ("pricingModel", "pricingCategory", "pricingType", "pricingBillable")


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _flag(value: object) -> bool | None:
    """``"true"``/``"false"`` as LINK writes them (a JSON boolean too)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def choice_replies(message: Mapping[str, Any]) -> Iterator[str]:
    """What a person chose, in WhatsApp's message object (seed 002; LINK passes it on
    as ``content.message``): a template button's text and payload, an interactive
    button's or list row's title."""
    button = message.get("button")
    if isinstance(button, dict):
        yield from _strings(button.get("text"), button.get("payload"))
    interactive = message.get("interactive")
    if isinstance(interactive, dict):
        for kind in ("button_reply", "list_reply"):
            choice = interactive.get(kind)
            if isinstance(choice, dict):
                yield from _strings(choice.get("title"))


def _reply_context(inner: Mapping[str, Any]) -> ReplyContext | None:
    """Seed 004 'Incoming Messages': ``context.id`` is "the message id (from META) of
    the original message" (our ``customParameters.waMessageId``); the choice is a
    template button's ``payload``/``text`` or an interactive reply's ``id``/``title``."""
    context = inner.get("context")
    wa_id = _text(context.get("id")) if isinstance(context, dict) else None
    if wa_id is None:
        return None
    kind = (_text(inner.get("contentType")) or "unknown").lower()
    button = inner.get("button")
    if isinstance(button, dict):
        return ReplyContext(wa_id, kind, _text(button.get("payload")), _text(button.get("text")))
    interactive = inner.get("interactive")
    if isinstance(interactive, dict):
        for choice_kind in ("button_reply", "list_reply"):
            choice = interactive.get(choice_kind)
            if isinstance(choice, dict):
                return ReplyContext(wa_id, kind, _text(choice.get("id")),
                                    _text(choice.get("title")))  # fmt: skip
    return ReplyContext(wa_id, kind)


def _digits(value: object) -> str | None:
    """A phone number's digits, from a display number like "+1 (650) 555-1234"."""
    if not isinstance(value, str):
        return None
    return "".join(c for c in value if c.isdigit()) or None


def _is_number(value: str | None) -> bool:
    """A phone number (MSISDN), not a BSUID: digits, with or without '+'."""
    text = "".join((value or "").split())
    return text.removeprefix("+").isdigit()


def _named(custom_parameters: Mapping[str, object]) -> tuple[str | None, ...]:
    return tuple(v if isinstance(v, str) else None for v in map(custom_parameters.get, _NAMING))


def _strings(*values: Any) -> Iterator[str]:
    for value in values:
        if isinstance(value, str):
            yield value
