"""Schema check of a Cloud API send body (``POST /{version}/{phone-number-id}/messages``).

Written from seed 000 (``to`` / ``recipient``) and Meta's messages reference, and kept apart
from the dispatcher's client like the LINK side's ``validation``. The message objects of the
Cloud API are those LINK's message form mirrors, so their checks are LINK's where the two
agree (templates, media, location, interactive), and contacts with Meta's key names.
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.simulator.identity import MSISDN_RE, Kind, classify
from dispatcher.simulator.validation import (
    MESSAGE_CHECKS,
    Check,
    JsonObject,
    ParsedMessage,
    SchemaError,
    check_contacts,
    collect_media,
    required_object,
    required_text,
    template_use,
)


@dataclass(slots=True)
class ParsedSend:
    """What the simulator needs of one send: who, what, and the opaque data to echo."""

    kind: Kind
    destination: str  # canonical: ``+digits`` or the BSUID as given
    given: str  # ``to``/``recipient`` as written: the answer's ``contacts[].input``
    message: ParsedMessage
    opaque: str | None  # biz_opaque_callback_data


def parse_send(body: object) -> ParsedSend:
    """Validate a decoded send body or raise SchemaError naming the field."""
    if not isinstance(body, dict):
        raise SchemaError("request", "must be a JSON object")
    if body.get("messaging_product") != "whatsapp":
        raise SchemaError("messaging_product", "is required and must be whatsapp")
    recipient_type = body.get("recipient_type", "individual")
    if recipient_type != "individual":
        raise SchemaError("recipient_type", "must be individual")
    kind, destination, given = _addressee(body)
    message_type = body.get("type", "text")  # Meta's reference: text when omitted
    check = _CHECKS.get(message_type) if isinstance(message_type, str) else None
    if check is None:
        raise SchemaError("type", f"must be one of {', '.join(sorted(_CHECKS))}")
    check(body, "message")
    media_ids: list[str] = []
    collect_media({message_type: body.get(message_type)}, media_ids)
    is_template = message_type == "template"
    use = template_use(body) if is_template else None
    opaque = body.get("biz_opaque_callback_data")
    if opaque is not None and (not isinstance(opaque, str) or len(opaque) > 512):
        raise SchemaError("biz_opaque_callback_data", "must be a string of at most 512 characters")
    return ParsedSend(
        kind,
        destination,
        given,
        ParsedMessage(message_type, is_template, tuple(media_ids), use),
        opaque,
    )


def _addressee(body: JsonObject) -> tuple[Kind, str, str]:
    """Seed 000: ``to`` (a phone number) takes precedence over ``recipient`` (a BSUID or
    parent BSUID) when both are given."""
    to, recipient = body.get("to"), body.get("recipient")
    if to is not None:
        if not isinstance(to, str) or not MSISDN_RE.fullmatch(to):
            raise SchemaError("to", "must be a phone number (optional '+', 7-15 digits)")
        return Kind.MSISDN, to if to[0] == "+" else "+" + to, to
    if recipient is not None:
        identity = classify(recipient) if isinstance(recipient, str) else None
        if identity is None or identity[0] is Kind.MSISDN:
            raise SchemaError("recipient", "must be a BSUID CC.<id> or a parent BSUID CC.ENT.<id>")
        return identity[0], identity[1], recipient
    raise SchemaError("to", "or recipient is required")


def _check_text(body: JsonObject, path: str) -> None:
    text = required_object(body, "text", path)
    required_text(text, "body", f"{path}.text")
    if "preview_url" in text and not isinstance(text["preview_url"], bool):
        raise SchemaError(f"{path}.text.preview_url", "must be a boolean")


def _check_contacts(body: JsonObject, path: str) -> None:
    # Meta's reference: each contact needs name.formatted_name.
    check_contacts(body, path, formatted_name="formatted_name", name_required=True)


def _check_reaction(body: JsonObject, path: str) -> None:
    reaction = required_object(body, "reaction", path)
    required_text(reaction, "message_id", f"{path}.reaction")
    if not isinstance(reaction.get("emoji"), str):
        raise SchemaError(f"{path}.reaction.emoji", "is required and must be a string")


_CHECKS: dict[str, Check] = {
    **MESSAGE_CHECKS,
    "text": _check_text,
    "contacts": _check_contacts,
    "reaction": _check_reaction,
}
