"""What the pipeline says to a messaging provider, and what it hears back.

The stages speak this vocabulary only; each provider (``link/`` today) implements it
with its own wire models, which satisfy the protocols below structurally: a LINK
``MessageRequest`` *is* a ``Request`` and a LINK ``DeliveryReport`` *is* a
``StatusReport``, so nothing is copied on the way through.

The unit of sending is a **request**: one HTTP call carrying one or more people who get
the same messages (LINK takes a batch of ``destinations``; Meta's Cloud API takes one
recipient a request). The fan-out sends a **slice** of requests at a time through a
``SliceSender``, many in flight within one event loop; never one call per message.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from dispatcher.status import MessageStatus

if TYPE_CHECKING:
    from dispatcher.campaigns.spec import CampaignSpec

#: The longest message id the dispatcher stores (``messages`` and ``delivery_reports``
#: columns; Meta's ``wamid.`` ids run past 64); a callback naming a longer one is
#: refused at intake.
MAX_ID_CHARS = 128
#: The longest request id (our batch ids, LINK's ``refId``) a callback may name.
MAX_REF_CHARS = 64


class Priority(StrEnum):
    """A campaign's priority: its requests' (LINK ``priority``) and its send tasks'."""

    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"


class Level(StrEnum):
    """A sender's throughput level (seed 004 'Phone number information API'; Meta's
    ``throughput.level`` uses the same names)."""

    STANDARD = "STANDARD"
    HIGH = "HIGH"
    UNKNOWN = "UNKNOWN"

    @property
    def messages_per_second(self) -> int:
        # Seed 004: STANDARD = 80 messages per second, HIGH = 1000.
        return 1000 if self is Level.HIGH else 80

    @classmethod
    def _missing_(cls, value: object) -> Level:
        return cls.UNKNOWN


class Request(Protocol):
    """One request built by a provider (``Provider.request``); the pipeline reads who
    it is for and what it costs, the provider its body."""

    @property
    def provider(self) -> str:
        """Which provider built it (``"link"``, ``"meta"``): a request goes out the way
        it came in."""
        ...

    @property
    def ref_id(self) -> str:
        """The batch it sends (its id comes back in status reports)."""
        ...

    @property
    def destinations(self) -> list[str]:
        """Its people, in the order their message ids come back."""
        ...

    @property
    def messages(self) -> list[dict[str, Any]]: ...

    def to_wire(self) -> dict[str, Any]:
        """The JSON body that goes out."""
        ...

    def body(self) -> bytes:
        """That body encoded, as it goes out (built once, sent as is)."""
        ...


class Answer(Protocol):
    """A provider's acceptance of a request: one message id per destination, in order."""

    @property
    def result_code(self) -> int | None: ...

    @property
    def message_ids(self) -> list[str]: ...

    @property
    def held_for_quality(self) -> bool:
        """The provider took it but holds it back for now (Meta's template pacing,
        ``message_status: held_for_quality_assessment``, seed 002)."""
        ...

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        """The identifiers the answer gives for a one-person request (Meta's
        ``contacts[]``: ``wa_id``, ``user_id``, ``parent_user_id``, seed 000), raw; empty
        when it names none."""
        ...


class UploadedMedia(NamedTuple):
    media_id: str
    #: the simulator instance that took it (None from a real provider)
    simulator_instance: str | None = None


@dataclass(frozen=True, slots=True)
class SenderInfo:
    """What a provider says about a sender before a campaign starts."""

    level: Level = Level.UNKNOWN  # UNKNOWN: not reported
    #: why the sender cannot send ("" when no reason was given); None when it can
    blocked: str | None = None
    #: what limits the sender ("" when no details were given); None when nothing does
    limited: str | None = None
    #: the messaging tier as reported (e.g. ``TIER_10K``), None when not reported
    tier: str | None = None
    #: the quality rating as reported (GREEN, YELLOW, RED, NA), None when not reported
    quality: str | None = None
    #: a cap below the level's rate, when the provider sets one (Meta: a number also
    #: used in the WhatsApp Business app sends at most 20 messages a second)
    messages_per_second: int | None = None


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """A message template as the provider lists it (LINK: seed 004 'List Templates',
    in Meta's template format): what a campaign's message must match."""

    name: str
    language: str
    #: APPROVED, or why it cannot be sent: PAUSED, DISABLED, REJECTED, PENDING...
    status: str
    #: MARKETING, UTILITY or AUTHENTICATION; None when not listed
    category: str | None = None
    header_parameters: int = 0
    body_parameters: int = 0
    #: button parameters a send must give (dynamic URLs, copy codes) ...
    button_parameters_required: int = 0
    #: ... and may give (quick-reply payloads and flow buttons besides)
    button_parameters_allowed: int = 0
    #: a carousel template: its cards' parameters are not counted
    carousel: bool = False
    template_id: str | None = None

    @property
    def approved(self) -> bool:
        return self.status.upper() == "APPROVED"

    @property
    def authentication(self) -> bool:
        return (self.category or "").upper() == "AUTHENTICATION"


class SliceSender(Protocol):
    """Requests in flight at once within one event loop (``Provider.concurrent``): the
    fan-out sends a slice at a time through it, each request at its moment. Closed with
    ``aclose`` in the same loop."""

    async def send(self, request: Request) -> Answer:
        """Send one request; raises the ``LinkError`` tree (``dispatcher.errors``):
        transient when nothing left, in doubt when it may have been queued."""
        ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Provider(Protocol):
    """A messaging provider as the stages use it; one per worker process."""

    @property
    def name(self) -> str:
        """How users know it ("LINK"): notes and errors about it say so."""
        ...

    @property
    def account(self) -> str:
        """Which account this is, as a short digest: media ids are cached per account."""
        ...

    def request(
        self,
        spec: CampaignSpec,
        batch_id: str,
        destinations: list[str],
        messages: list[dict[str, Any]],
        *,
        valid_until: datetime | None,
        event_report_gate: str | None,
        campaign_id: int,
    ) -> Request:
        """The request of a batch: ``messages`` for ``destinations``, identified by
        ``batch_id``, not delivered after ``valid_until``; its status reports go to
        ``event_report_gate`` where the provider routes reports per request. It names
        its campaign and batch where the provider keeps such tags (LINK's
        ``customParameters``), for the provider's support and its reports."""
        ...

    def send(self, request: Request) -> Answer:
        """Send one request and wait for its answer (the single-batch path)."""
        ...

    def concurrent(self, max_connections: int = ...) -> SliceSender:
        """A sender for many requests in flight at once, on the same account."""
        ...

    def upload_media(
        self, *, source: str, content_type: str, filename: str, data: bytes
    ) -> UploadedMedia: ...

    def sender_info(self, source: str) -> SenderInfo:
        """Level, health and tier of a sender."""
        ...

    def templates(self, source: str) -> list[TemplateInfo]:
        """The sender's message templates (kept briefly: asked once per campaign)."""
        ...

    def simulator_instance(self) -> str | None:
        """The project's simulator instance answering for this provider, or None (the
        real provider, or nothing answering): media a simulator took dies with it."""
        ...

    def close(self) -> None: ...


class InvalidReport(ValueError):
    """A webhook body that is not a callback its provider sends."""


class StatusReport(Protocol):
    """A provider's report on one message it was given (LINK: a Message Status
    Notification)."""

    @property
    def message_id(self) -> str | None:
        """The provider's id of the message (``Answer.message_ids``)."""
        ...

    @property
    def ref_id(self) -> str | None:
        """The request it came in (``Request.ref_id``), when the report says."""
        ...

    @property
    def result_code(self) -> int | None: ...

    @property
    def result_description(self) -> str | None: ...

    @property
    def timestamp(self) -> datetime | None: ...

    @property
    def message_status(self) -> MessageStatus | None:
        """The status it reports; None when it reports nothing tracked."""
        ...

    @property
    def is_request_failure(self) -> bool:
        """It reports a whole request refused: none of its messages was sent."""
        ...

    @property
    def whatsapp_error_code(self) -> int | None:
        """WhatsApp's (Meta's) error code of a failure, when given."""
        ...

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        """The raw identifiers the report names (number, BSUID, parent BSUID) for the
        identity book; empty when it names none."""
        ...

    @property
    def whatsapp_message_id(self) -> str | None:
        """WhatsApp's own id of the message (a reply names it), when given."""
        ...

    @property
    def pricing(self) -> Pricing | None:
        """How WhatsApp prices the message, when the report says."""
        ...


class Pricing(NamedTuple):
    """WhatsApp's pricing of a message as a status report gives it (seed 004 DLR
    Example#1: ``pricingModel``, ``pricingCategory``, ``pricingType``,
    ``pricingBillable``); what it costs is the account's rate card, not known here."""

    model: str | None = None
    category: str | None = None
    type: str | None = None
    billable: bool | None = None


class ReplyContext(NamedTuple):
    """What an incoming message answers: WhatsApp's id of one of our messages, and the
    choice it carries (a template button's payload and text, an interactive button's or
    list row's id and title)."""

    wa_message_id: str
    kind: str  # the provider's content type, lower case: text, button, interactive...
    button: str | None = None
    label: str | None = None


class IncomingReport(Protocol):
    """A message a person sent to the sender."""

    @property
    def timestamp(self) -> datetime | None: ...

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        """The raw identifiers of its sender, the one it came from first."""
        ...

    @property
    def business_number(self) -> str | None:
        """The business number it was sent to, E.164 (its care window is with that
        number); None when the report does not say."""
        ...

    def replies(self) -> Iterator[str]:
        """What the person typed or chose: texts, button texts and payloads, titles."""
        ...

    @property
    def message_id(self) -> str | None:
        """The provider's id of this incoming message (a body delivered twice names the
        same one), when given."""
        ...

    @property
    def reply_context(self) -> ReplyContext | None:
        """The message of ours it answers, when it says (None: not a reply)."""
        ...

    @property
    def shares_own_number(self) -> bool:
        """The sender shares their own number (a contacts message answering the
        business's ``REQUEST_CONTACT_INFO``, seeds 000 and 004): ``named_identifiers``
        then holds it with their BSUID."""
        ...


class EchoReport(Protocol):
    """A message the business sent a person from outside the dispatcher (Meta: the
    WhatsApp Business app, seed 003 ``smb_message_echoes``): none of a campaign's, and
    nobody writing to the business."""

    @property
    def message_id(self) -> str | None:
        """WhatsApp's id of the message (a body delivered twice names the same one)."""
        ...

    @property
    def type(self) -> str:
        """What it was: text, image, edit, revoke..."""
        ...

    @property
    def timestamp(self) -> datetime | None: ...

    @property
    def business_number(self) -> str | None:
        """The business number it was sent from, E.164; None when the body does not say."""
        ...

    @property
    def named_identifiers(self) -> tuple[str | None, ...]:
        """The raw identifiers of the person it went to (number, BSUID, parent BSUID)."""
        ...

    @property
    def original_message_id(self) -> str | None:
        """The message an edit or a revoke is about."""
        ...


class IdentityChange(NamedTuple):
    """A user's identifiers changed, as the provider says it (Meta: ``system`` messages
    ``user_changed_number`` and ``user_changed_user_id``, ``user_id_update``; seeds 000
    and 002): ``old`` are no longer theirs from ``at``, ``new`` are, ``same`` still
    name them. Raw values as given (``book.identifiers_in`` reads them)."""

    event: str  # user_changed_number | user_changed_user_id | user_id_update
    old: tuple[str | None, ...]
    new: tuple[str | None, ...]
    same: tuple[str | None, ...]
    at: datetime | None
    #: the business number the webhook is about (its portfolio scopes the BSUIDs)
    business_number: str | None


#: A contact's raw identifiers and the WhatsApp username it goes by (seed 000).
Username = tuple[tuple[str | None, ...], str]


class SenderEvent(NamedTuple):
    """What a provider says happened to a sender (Meta's ``message_template_status_update``,
    ``phone_number_quality_update`` and ``account_update`` webhooks): a template's new
    status, the number's quality, or the account blocked. Campaigns of that sender (of
    that template) are judged by it at once (``tracking.sender_events``)."""

    kind: str  # "template" | "quality" | "account"
    #: what the provider calls the event (PAUSED, FLAGGED, DISABLED_UPDATE...)
    event: str
    at: datetime | None = None
    #: the business account it is about (Meta: the WABA id); None when not said
    account: str | None = None
    #: the business number it is about, E.164; None: every number of the account
    business_number: str | None = None
    template_name: str | None = None
    template_language: str | None = None
    #: a template's new status (APPROVED, PAUSED, DISABLED...)
    template_status: str | None = None
    #: the number's quality rating (GREEN, YELLOW, RED) when the event says it
    quality: str | None = None
    #: the messaging limit (tier) as reported
    limit: str | None = None
    #: why the sender can no longer send ("" when no reason is given); None when it can
    blocked: str | None = None
    #: the reason or detail the provider gives, for people
    detail: str = ""


class Callback(NamedTuple):
    """What one webhook body holds."""

    statuses: Sequence[StatusReport] = ()
    incoming: Sequence[IncomingReport] = ()
    echoes: Sequence[EchoReport] = ()
    changes: Sequence[IdentityChange] = ()
    #: usernames seen with the people the body names: display only, never a destination
    usernames: Sequence[Username] = ()
    sender_events: Sequence[SenderEvent] = ()
