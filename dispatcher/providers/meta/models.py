"""Wire models of Meta's WhatsApp Cloud API: the send body, its answer, Graph errors and
the phone number's fields. They satisfy the pipeline's protocols as they are.

A campaign's message is written in LINK's form (seed 004 'Messages',
``dispatcher.messages``), which copies Meta's own almost everywhere; ``cloud_message``
changes what differs (Meta's reference, 'Messages' and 'Template messages'):

* text: ``previewUrl`` beside ``text`` -> ``text.preview_url``;
* contacts: camelCase keys -> snake_case (``formattedName`` -> ``formatted_name``,
  ``countryCode``, ``waId``...);
* templates: ``parameterName``, ``fallbackValue``, ``amount1000`` (a string there, a
  number here), ``dateTime`` (type and key), ``dayOfWeek``/``dayOfMonth``, ``subType``
  (``quickReply`` -> ``quick_reply``), ``flowToken`` -> snake_case; a button's ``index``
  as the string Meta's examples write; ``components`` beside ``template`` moved in, an
  empty list left out;
* media, location, sticker and interactive messages: unchanged (seed 004 writes them
  exactly as Meta's reference does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from dispatcher.providers.base import Level, SenderInfo
from dispatcher.providers.http import json_object

__all__ = [
    "GraphError",
    "MetaAnswer",
    "MetaRequest",
    "PhoneNumberFields",
    "cloud_message",
    "read_answer",
    "recipient_field",
]


# --- the send body ----------------------------------------------------------------------

#: Every send body starts alike (seed 000 'Sending messages'): one person a request.
_OPENING = b'{"messaging_product":"whatsapp","recipient_type":"individual",'


def recipient_field(destination: str) -> bytes:
    """Seed 000: ``to`` for a phone number, ``recipient`` for a BSUID (``CC.digits``) or
    a parent BSUID (``CC.ENT.digits``). A stored destination is E.164 (``+``) or a
    BSUID, never both in one request (``to`` would win)."""
    return b'"to":' if destination[:1] == "+" or destination.isdigit() else b'"recipient":'


class MetaRequest:
    """One ``POST /{version}/{phone-number-id}/messages``, its body encoded once.

    ``content`` is the message translated and encoded without its braces
    (``encode_content``), shared by every request of the same content; only the
    recipient and the batch (``biz_opaque_callback_data``: statuses carry it back as
    their ``ref_id``) are written per request.
    """

    __slots__ = ("_body", "destinations", "messages", "path", "ref_id")
    provider = "meta"

    def __init__(
        self,
        path: str,
        ref_id: str,
        destinations: list[str],
        messages: list[dict[str, Any]],
        content: bytes,
    ) -> None:
        if len(destinations) != 1 or len(messages) != 1:
            raise ValueError("a Cloud API request carries one person and one message")
        self.path = path
        self.ref_id = ref_id
        self.destinations = destinations
        self.messages = messages
        destination = destinations[0]
        self._body = b"%s%s%s,\"biz_opaque_callback_data\":%s,%s}" % (
            _OPENING, recipient_field(destination), orjson.dumps(destination),
            orjson.dumps(ref_id), content,
        )  # fmt: skip

    def body(self) -> bytes:
        return self._body

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = orjson.loads(self._body)
        return wire


def encode_content(message: Mapping[str, Any]) -> bytes:
    """A message translated (``cloud_message``) and encoded without its outer braces,
    to follow the recipient fields of a send body."""
    return orjson.dumps(cloud_message(message))[1:-1]


# --- translation from LINK's message form ------------------------------------------------

# Keys seed 004 writes in camelCase where Meta's reference writes snake_case: the template
# parameters (seed 004 'Parameter', 'Currency', 'DateTime', 'Interactive action') and the
# contact card (seed 004 'Contacts message').
_SNAKE_KEYS = {
    "parameterName": "parameter_name",
    "fallbackValue": "fallback_value",
    "amount1000": "amount_1000",
    "dateTime": "date_time",
    "dayOfWeek": "day_of_week",
    "dayOfMonth": "day_of_month",
    "subType": "sub_type",
    "flowToken": "flow_token",
    "formattedName": "formatted_name",
    "firstName": "first_name",
    "lastName": "last_name",
    "middleName": "middle_name",
    "countryCode": "country_code",
    "waId": "wa_id",
}
# Button sub-types in Meta's spelling (Meta's catalog template example writes CATALOG).
_SUB_TYPES = {"quickReply": "quick_reply", "catalog": "CATALOG"}


def cloud_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """The Cloud API form of a message written in LINK's form (the module docstring
    lists what changes); the input is left as it was."""
    kind = message.get("type")
    if kind == "text":
        text = dict(message.get("text") or {})
        if message.get("previewUrl") is not None:
            text["preview_url"] = message["previewUrl"]
        return {"type": "text", "text": text}
    if kind == "template":
        return {"type": "template", "template": _template(message)}
    if kind == "contacts":
        return {"type": "contacts", "contacts": _snake(message.get("contacts"))}
    # Media, location, sticker, interactive: Meta's own shape already.
    return dict(message)


def _template(message: Mapping[str, Any]) -> dict[str, Any]:
    # Built anew, the parts Meta takes as they are shared (never changed afterwards):
    # a personalised campaign translates one template a person.
    template = {k: v for k, v in (message.get("template") or {}).items() if k != "components"}
    # Seed 004 puts components beside the template in two examples; Meta wants them in.
    components = (message.get("template") or {}).get("components") or message.get("components")
    if components:
        template["components"] = [_component(c) for c in components]
    return template


def _component(component: Any) -> Any:
    if not isinstance(component, dict):
        return component
    button = component.get("type") == "button"
    out: dict[str, Any] = {}
    for key, value in component.items():
        if key == "parameters" and isinstance(value, list):
            value = [_parameter(p) for p in value]
        elif key == "cards" and isinstance(value, list):
            value = [_card(card) for card in value]
        elif key in ("subType", "sub_type"):
            key, value = "sub_type", _SUB_TYPES.get(value, value)
        elif key == "index" and button and type(value) is int:
            value = str(value)  # Meta's reference writes "index": "0"
        out[key] = value
    return out


def _card(card: Any) -> Any:
    if not isinstance(card, dict) or not isinstance(card.get("components"), list):
        return card
    return {**card, "components": [_component(c) for c in card["components"]]}


# Parameters Meta takes as seed 004 writes them (their keys are snake_case already).
_SAME_PARAMETERS = frozenset(
    {"payload", "image", "video", "document", "coupon_code", "limited_time_offer"}
)


def _parameter(parameter: Any) -> Any:
    if not isinstance(parameter, dict):
        return parameter
    kind = parameter.get("type")
    if kind in _SAME_PARAMETERS or (kind == "text" and "parameterName" not in parameter):
        return parameter
    if kind == "dateTime":
        moment = parameter.get("dateTime")
        if isinstance(moment, dict):
            # Seed 004's ``timestamp`` (milliseconds) has no Cloud API field: Meta shows
            # the fallback value, which every date-time carries.
            moment = {k: v for k, v in moment.items() if k != "timestamp"}
        return {"type": "date_time", "date_time": _snake(moment)}
    renamed = _snake(parameter)
    currency = renamed.get("currency") if kind == "currency" else None
    amount = currency.get("amount_1000") if isinstance(currency, dict) else None
    if isinstance(amount, str) and amount.lstrip("-").isdigit():
        currency["amount_1000"] = int(amount)  # type: ignore[index]
    return renamed


def _snake(value: Any) -> Any:
    """A copy of ``value`` with LINK's camelCase keys in Meta's spelling, at any depth.
    Used on templates and contacts only: neither has keys of the sender's choosing
    (interactive flow data does, and is never renamed)."""
    if isinstance(value, dict):
        return {_SNAKE_KEYS.get(k, k): _snake(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_snake(v) for v in value]
    return value


# --- the answer -----------------------------------------------------------------------


class MetaAnswer:
    """A send the Cloud API took: its wamid, whether it is held for quality (template
    pacing, seed 002) and the person's identifiers as ``contacts[0]`` names them."""

    __slots__ = ("held_for_quality", "message_ids", "message_status", "named_identifiers")
    result_code: int | None = None  # the Cloud API has no result code on success

    def __init__(
        self,
        message_id: str,
        *,
        message_status: str | None = None,
        named_identifiers: tuple[str | None, ...] = (),
    ) -> None:
        self.message_ids = [message_id]
        self.message_status = message_status
        self.held_for_quality = _held(message_status)
        self.named_identifiers = named_identifiers

    def __repr__(self) -> str:  # identifiers stay out of logs
        return f"MetaAnswer({self.message_ids[0]!r}, message_status={self.message_status!r})"


def _held(message_status: str | None) -> bool:
    """Seed 002 'Template held for Pacing': ``held_for_quality_assessment``; its example
    writes the status as a sentence ("Message has been held because quality assessment
    is pending"), which is read the same way. ``accepted`` or none: not held."""
    if not message_status or message_status == "accepted":
        return False
    return message_status == "held_for_quality_assessment" or "held" in message_status.lower()


def read_answer(body: bytes) -> MetaAnswer | None:
    """A 200 answer of a send, or None when it is not one. Read by hand: a thousand
    answers a second, and only the wamid, its status and ``contacts[0]`` are needed."""
    data = json_object(body)
    if data is None:
        return None
    messages = data.get("messages")
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        return None
    message = messages[0]
    wamid, status = message.get("id"), message.get("message_status")
    if type(wamid) is not str or not wamid or not (status is None or type(status) is str):
        return None
    named: tuple[str | None, ...] = ()
    contacts = data.get("contacts")
    if isinstance(contacts, list) and contacts and isinstance(contacts[0], dict):
        contact = contacts[0]
        named = tuple(
            v if type(v) is str and v else None
            for v in (contact.get("wa_id"), contact.get("user_id"), contact.get("parent_user_id"))
        )
        if named == (None, None, None):
            named = ()
    return MetaAnswer(wamid, message_status=status, named_identifiers=named)


# --- errors and the phone number -------------------------------------------------------


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class GraphErrorData(_Open):
    details: str | None = None


class GraphError(_Open):
    """The ``error`` object of a Graph error answer (Meta's reference; seed 000 shows
    one): ``{"error": {"message", "type", "code", "error_subcode", "error_data":
    {"details"}, "fbtrace_id"}}``."""

    message: str | None = None
    type: str | None = None
    code: int | None = None
    error_subcode: int | None = None
    error_data: GraphErrorData | None = None
    fbtrace_id: str | None = None

    @property
    def details(self) -> str | None:
        return self.error_data.details if self.error_data else None


class _HealthError(_Open):
    error_code: int | str | None = None
    error_description: str | None = None
    possible_solution: str | None = None

    def described(self) -> str:
        parts = (self.error_code, self.error_description, self.possible_solution)
        return " - ".join(str(part) for part in parts if part)


class _HealthEntity(_Open):
    entity_type: str | None = None
    id: str | None = None
    can_send_message: str | None = None
    errors: list[_HealthError] = Field(default_factory=list)
    additional_info: list[str] = Field(default_factory=list)


class HealthStatus(_Open):
    """Meta's reference, 'Health status': the overall verdict and each node's."""

    can_send_message: str | None = None
    entities: list[_HealthEntity] = Field(default_factory=list)


class Throughput(_Open):
    level: Level = Level.UNKNOWN  # STANDARD, HIGH; NOT_APPLICABLE reads as UNKNOWN


#: Meta's reference, 'Throughput': "WhatsApp Business app phone numbers that are in use
#: with both the WhatsApp Business app and Cloud API have a fixed throughput of 20 mps".
BIZ_APP_MESSAGES_PER_SECOND = 20


class PhoneNumberFields(_Open):
    """``GET /{phone-number-id}?fields=...``: what pre-flight reads about a sender."""

    display_phone_number: str | None = None
    quality_rating: str | None = None
    messaging_limit_tier: str | None = None
    throughput: Throughput | None = None
    name_status: str | None = None
    health_status: HealthStatus | None = None
    #: also in use in the WhatsApp Business app ("coexistence")
    is_on_biz_app: bool | None = None

    def sender_info(self) -> SenderInfo:
        """As LINK's phone number information is judged: BLOCKED with each node's
        errors, LIMITED with their additional information; a display name Meta
        declined or let expire limits the number too (Meta's reference, 'Display
        names'). A number also used in the WhatsApp Business app is capped at
        ``BIZ_APP_MESSAGES_PER_SECOND`` whatever its level."""
        health = self.health_status
        verdict = health.can_send_message if health else None
        entities = health.entities if health else []
        blocked = limited = None
        if verdict == "BLOCKED":
            blocked = "; ".join(e.described() for n in entities for e in n.errors)
        elif verdict == "LIMITED":
            limited = "; ".join(info for n in entities for info in n.additional_info)
        if blocked is None and self.name_status in ("DECLINED", "EXPIRED"):
            note = f"display name {self.name_status}"
            limited = f"{limited}; {note}" if limited else note
        return SenderInfo(
            level=self.throughput.level if self.throughput else Level.UNKNOWN,
            blocked=blocked,
            limited=limited,
            tier=self.messaging_limit_tier,
            quality=self.quality_rating,
            messages_per_second=BIZ_APP_MESSAGES_PER_SECOND if self.is_on_biz_app else None,
        )
