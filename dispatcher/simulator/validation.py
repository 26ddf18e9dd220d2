"""Schema check of a MessageRequest, written from the seed alone.

Deliberately independent of the dispatcher's own models: the simulator exists to catch client
bugs, so it must not share the client's understanding of the document. Unknown keys are
tolerated (the seed's own examples put ``components`` both inside and beside ``template``).
The public checks are also the Cloud API's (``meta.requests``), whose message objects LINK's
mirror.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from dispatcher.simulator.identity import MSISDN_RE, Kind, classify
from dispatcher.simulator.templates import TemplateUse

# Seed 'MessageRequest': priority is Enum <LOW,NORMAL,HIGH>.
PRIORITIES = frozenset({"LOW", "NORMAL", "HIGH"})
_OPTIONAL_STRINGS = ("platformServiceId", "platformServiceType", "platformTransactionId")
# Seed 'Terms and glossary' > 'Date': RFC3339.
_RFC3339_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
MEDIA_KINDS = ("image", "video", "document", "audio", "sticker")
_TEMPLATE_MEDIA = frozenset({"image", "video", "document"})

JsonObject = dict[str, Any]


class SchemaError(Exception):
    """The request fails the MessageRequest schema; ``str()`` names the offending field."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field} {problem}")


@dataclass(slots=True)
class ParsedMessage:
    """What the simulator needs to know about one entry of ``messages``."""

    dlr_type: str
    is_template: bool
    media_ids: tuple[str, ...]
    template: TemplateUse | None = None  # what a template message fills


@dataclass(slots=True)
class ParsedRequest:
    platform_id: str
    platform_partner_id: str
    ref_id: str
    source: str
    destinations: list[tuple[Kind, str]]
    messages: list[ParsedMessage]
    gates: list[str]
    custom_parameters: dict[str, Any]


def parse_message_request(body: object) -> ParsedRequest:
    """Validate a decoded MessageRequest (seed 'POST /messages') or raise SchemaError."""
    if not isinstance(body, dict):
        raise SchemaError("request", "must be a JSON object")
    platform_id = _required_str(body, "platformId")
    platform_partner_id = _required_str(body, "platformPartnerId")
    ref_id = _required_str(body, "refId")
    priority = body.get("priority")
    if not isinstance(priority, str) or priority not in PRIORITIES:
        raise SchemaError("priority", "is required and must be one of LOW, NORMAL, HIGH")
    source = _required_str(body, "source")
    if not MSISDN_RE.fullmatch(source):
        raise SchemaError("source", "must be an MSISDN (optional '+', 7-15 digits)")
    _check_optional_fields(body)
    return ParsedRequest(
        platform_id=platform_id,
        platform_partner_id=platform_partner_id,
        ref_id=ref_id,
        source=source if source[0] == "+" else "+" + source,
        destinations=_destinations(body.get("destinations")),
        messages=_messages(body.get("messages")),
        gates=_string_list(body, "eventReportGates"),
        custom_parameters=_custom_parameters(body.get("customParameters")),
    )


def _required_str(body: JsonObject, name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise SchemaError(name, "is required and must be a non-empty string")
    return value


def _check_optional_fields(body: JsonObject) -> None:
    # Optional fields may be absent or null: the seed marks them "Required: No" and never
    # says that null is refused.
    for name in _OPTIONAL_STRINGS:
        if body.get(name) is not None and not isinstance(body[name], str):
            raise SchemaError(name, "must be a string")
    relative = body.get("relativeValidityTime")
    if relative is not None and (
        not isinstance(relative, int) or isinstance(relative, bool) or relative < 0
    ):
        raise SchemaError("relativeValidityTime", "must be a non-negative integer (ms)")
    absolute = body.get("absoluteValidityTime")
    if absolute is not None and not _is_rfc3339(absolute):
        raise SchemaError("absoluteValidityTime", "must be an RFC3339 date")


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str) or not _RFC3339_RE.fullmatch(value):
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _string_list(body: JsonObject, name: str) -> list[str]:
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SchemaError(name, "must be a list of strings")
    return value


def _custom_parameters(value: object) -> dict[str, Any]:
    # Seed 'KeyValueTypes'; one level of key/value data only ('Incoming Messages').
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SchemaError("customParameters", "must be an object")
    for key, item in value.items():
        if isinstance(item, dict | list):
            raise SchemaError(f"customParameters.{key}", "must be a scalar value")
    return value


def _destinations(value: object) -> list[tuple[Kind, str]]:
    if not isinstance(value, list) or not value:
        raise SchemaError("destinations", "is required and must be a non-empty list of strings")
    parsed = []
    for index, destination in enumerate(value):
        identity = classify(destination) if isinstance(destination, str) else None
        if identity is None:
            raise SchemaError(
                f"destinations[{index}]",
                "must be an MSISDN (optional '+', 7-15 digits), a BSUID CC.<id> "
                "or a parent BSUID CC.ENT.<id>",
            )
        parsed.append(identity)
    return parsed


def _messages(value: object) -> list[ParsedMessage]:
    if not isinstance(value, list) or not value:
        raise SchemaError("messages", "is required and must be a non-empty list of objects")
    return [_message(message, f"messages[{index}]") for index, message in enumerate(value)]


def _message(message: object, path: str) -> ParsedMessage:
    if not isinstance(message, dict):
        raise SchemaError(path, "must be an object")
    kind = message.get("type")
    if not isinstance(kind, str):
        raise SchemaError(f"{path}.type", "is required and must be a string")
    check = _CHECKS.get(kind)
    if check is None:
        raise SchemaError(f"{path}.type", f"must be one of {', '.join(sorted(_CHECKS))}")
    check(message, path)
    ids: list[str] = []
    has_media = collect_media(message, ids)
    if kind == "template":
        # Seed DLR examples report a media template as "MediaTemplateMessage".
        dlr_type = "MediaTemplateMessage" if has_media else "TemplateMessage"
    else:
        dlr_type = kind
    use = template_use(message) if kind == "template" else None
    return ParsedMessage(dlr_type, kind == "template", tuple(ids), use)


def template_use(message: JsonObject) -> TemplateUse:
    """Name, language and the parameters each component gives (components may sit in
    the template or beside it, as the seed's examples write them)."""
    template = message["template"]
    components = template.get("components") or message.get("components") or []
    counts = {"header": 0, "body": 0, "button": 0}
    carousel = False
    for component in components:
        if isinstance(component, dict):
            kind = component.get("type")
            if kind in counts:
                parameters = component.get("parameters")
                counts[kind] += len(parameters) if isinstance(parameters, list) else 0
            carousel = carousel or kind == "carousel"
    language = template["language"]["code"]
    return TemplateUse(template["name"], language, counts["header"], counts["body"],
                       counts["button"], carousel)  # fmt: skip


def collect_media(node: object, ids: list[str]) -> bool:
    """Gather uploaded-media ids anywhere in a message; True if it carries any media."""
    found = False
    if isinstance(node, dict):
        for key, value in node.items():
            if key in MEDIA_KINDS and isinstance(value, dict):
                found = True
                media_id = value.get("id")
                if isinstance(media_id, str):
                    ids.append(media_id)
            elif isinstance(value, dict | list):
                found = collect_media(value, ids) or found
    elif isinstance(node, list):
        for item in node:
            found = collect_media(item, ids) or found
    return found


def required_object(parent: JsonObject, name: str, path: str) -> JsonObject:
    """``parent[name]`` if it is an object; else SchemaError naming ``path.name``."""
    value = parent.get(name)
    if not isinstance(value, dict):
        raise SchemaError(f"{path}.{name}", "is required and must be an object")
    return value


def required_text(parent: JsonObject, name: str, path: str) -> str:
    """``parent[name]`` if it is a non-empty string; else SchemaError naming ``path.name``."""
    value = parent.get(name)
    if not isinstance(value, str) or not value:
        raise SchemaError(f"{path}.{name}", "is required and must be a non-empty string")
    return value


def _media_object(media: JsonObject, path: str, http_link: bool = True) -> None:
    # Seed 'Image message' (and video/audio/document/sticker): "Only one of id or link".
    has_id, has_link = "id" in media, "link" in media
    if has_id == has_link:
        raise SchemaError(path, "must have exactly one of id and link")
    if has_id:
        required_text(media, "id", path)
    else:
        link = required_text(media, "link", path)
        if http_link and not link.startswith(("http://", "https://")):
            raise SchemaError(f"{path}.link", "must begin with http:// or https://")


def check_template(message: JsonObject, path: str) -> None:
    # Seed 'Template' and 'Language': template.name and template.language.code are required.
    template = required_object(message, "template", path)
    required_text(template, "name", f"{path}.template")
    required_text(
        required_object(template, "language", f"{path}.template"),
        "code",
        f"{path}.template.language",
    )
    for owner, owner_path in ((template, f"{path}.template"), (message, path)):
        if "components" in owner:
            _components(owner["components"], f"{owner_path}.components")


def _components(components: object, path: str) -> None:
    # Seed 'Component' / 'Parameter': each has a type; media parameters follow the media rules.
    for component_path, component in _objects(components, path):
        required_text(component, "type", component_path)
        parameters = component.get("parameters", [])
        for parameter_path, parameter in _objects(parameters, f"{component_path}.parameters"):
            kind = required_text(parameter, "type", parameter_path)
            if kind in _TEMPLATE_MEDIA:
                media_path = f"{parameter_path}.{kind}"
                _media_object(required_object(parameter, kind, parameter_path), media_path)
        for card_path, card in _objects(component.get("cards", []), f"{component_path}.cards"):
            _components(card.get("components", []), f"{card_path}.components")


def _objects(value: object, path: str) -> Iterator[tuple[str, JsonObject]]:
    """Each object of the list ``value`` with its path, checked as it is reached (so the
    first fault in document order is the one reported)."""
    if not isinstance(value, list):
        raise SchemaError(path, "must be a list of objects")
    for index, item in enumerate(value):
        item_path = f"{path}[{index}]"
        if not isinstance(item, dict):
            raise SchemaError(item_path, "must be an object")
        yield item_path, item


def _check_text(message: JsonObject, path: str) -> None:
    # Seed 'Text message': text.body is required, previewUrl is a Boolean.
    required_text(required_object(message, "text", path), "body", f"{path}.text")
    if "previewUrl" in message and not isinstance(message["previewUrl"], bool):
        raise SchemaError(f"{path}.previewUrl", "must be a boolean")


def check_media(message: JsonObject, path: str) -> None:
    """An image, video, document, audio or sticker message (its key is its ``type``)."""
    kind = message["type"]
    media_path = f"{path}.{kind}"
    media = required_object(message, kind, path)
    _media_object(media, media_path)
    for name in ("caption", "filename"):
        if name in media and not isinstance(media[name], str):
            raise SchemaError(f"{media_path}.{name}", "must be a string")


def check_location(message: JsonObject, path: str) -> None:
    # Seed 'Location message': longitude and latitude are required Doubles.
    location = required_object(message, "location", path)
    for name, limit in (("longitude", 180), ("latitude", 90)):
        value = location.get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or abs(value) > limit:
            raise SchemaError(f"{path}.location.{name}", f"is required, a number within ±{limit}")


def check_contacts(
    message: JsonObject, path: str, *, formatted_name: str, name_required: bool
) -> None:
    """A non-empty ``contacts`` list of objects whose ``name`` holds ``formatted_name``.

    Shared by both APIs, which spell that key differently (LINK ``formattedName``, Meta
    ``formatted_name``) and disagree on whether ``name`` itself is required."""
    contacts = message.get("contacts")
    if not isinstance(contacts, list) or not contacts:
        raise SchemaError(f"{path}.contacts", "is required and must be a non-empty list")
    for index, contact in enumerate(contacts):
        contact_path = f"{path}.contacts[{index}]"
        if not isinstance(contact, dict):
            raise SchemaError(contact_path, "must be an object")
        if name_required or "name" in contact:
            name = required_object(contact, "name", contact_path)
            required_text(name, formatted_name, f"{contact_path}.name")


def _check_contacts(message: JsonObject, path: str) -> None:
    # Seed 'Contacts message' and 'Name': formattedName is required when a name is given.
    check_contacts(message, path, formatted_name="formattedName", name_required=False)


def check_interactive(message: JsonObject, path: str) -> None:
    # Seed 'Interactive message': interactive.type and interactive.action are required.
    interactive = required_object(message, "interactive", path)
    interactive_path = f"{path}.interactive"
    required_text(interactive, "type", interactive_path)
    required_object(interactive, "action", interactive_path)
    if "body" in interactive:
        required_text(
            required_object(interactive, "body", interactive_path),
            "text",
            f"{interactive_path}.body",
        )
    header = interactive.get("header")
    if not isinstance(header, dict):
        return
    kind = header.get("type")
    if isinstance(kind, str) and kind in _TEMPLATE_MEDIA:
        header_path = f"{interactive_path}.header"
        # Seed 'Interactive media': links may be provider-prefixed, so no scheme check here.
        _media_object(required_object(header, kind, header_path), f"{header_path}.{kind}", False)


Check = Callable[[JsonObject, str], None]
#: The message checks both APIs share, by message type (LINK's message objects mirror the
#: Cloud API's; text and contacts differ in their key names).
MESSAGE_CHECKS: dict[str, Check] = {
    "template": check_template,
    "location": check_location,
    "interactive": check_interactive,
    **dict.fromkeys(MEDIA_KINDS, check_media),
}
_CHECKS: dict[str, Check] = {**MESSAGE_CHECKS, "text": _check_text, "contacts": _check_contacts}
