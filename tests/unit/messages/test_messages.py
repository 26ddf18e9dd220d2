"""Message bodies against seed 004 'Messages': every example round-trips, every rule bites.

Fixtures in tests/data/messages/ are the seed's own JSON examples (fixes listed in its
README). Error paths are pydantic's ``loc`` joined by dots; they include the union tags
pydantic inserts (the message ``type``, then ``interactive.type`` or component type).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from dispatcher.messages import (
    BodyComponent,
    ButtonComponent,
    HeaderComponent,
    ImageParameter,
    Language,
    Media,
    PayloadParameter,
    Template,
    TemplateMessage,
    Text,
    TextMessage,
    TextParameter,
    message_json_schema,
    parse_message,
)
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "messages"
FIXTURES = sorted(DATA.glob("*.json"))
DELETE = object()


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return data


def changed(name: str, changes: dict[tuple[str | int, ...], Any]) -> dict[str, Any]:
    """Fixture ``name`` with the value at each path replaced (or removed with DELETE)."""
    data = copy.deepcopy(load(name))
    for path, value in changes.items():
        node: Any = data
        for part in path[:-1]:
            node = node[part]
        if value is DELETE:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return data


def expected_wire(name: str) -> dict[str, Any]:
    """What a fixture is written as: itself, or its normalised form where the README says."""
    normalised = DATA / "normalised" / f"{name}.json"
    if normalised.exists():
        data: dict[str, Any] = json.loads(normalised.read_text(encoding="utf-8"))
        return data
    return load(name)


def error_paths(exc: ValidationError) -> dict[str, str]:
    return {".".join(str(part) for part in error["loc"]): error["msg"] for error in exc.errors()}


# --- the seed's examples ------------------------------------------------------------------


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_seed_example_is_written_back_as_the_seed_writes_it(path: Path) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))

    assert parse_message(data).to_wire() == expected_wire(path.stem)


def test_seed_examples_cover_every_message_and_interactive_type() -> None:
    messages = [json.loads(path.read_text(encoding="utf-8")) for path in FIXTURES]
    types = {message["type"] for message in messages}
    interactive = {
        message["interactive"]["type"] for message in messages if message["type"] == "interactive"
    }

    assert types == {
        "template", "text", "image", "audio", "video", "document", "sticker", "location",
        "contacts", "interactive",
    }  # fmt: skip
    assert interactive == {
        "list", "button", "product", "product_list", "catalog_message", "carousel", "flow",
        "cta_url", "location_request_message", "contact_request",
    }  # fmt: skip


# --- documented rules: each error names the field --------------------------------------

LIST = "interactive.interactive.list"
BUTTON = "interactive.interactive.button"
FLOW = "interactive.interactive.flow.action.parameters"
MEDIA_CARDS = "interactive.interactive.carousel_media.action.cards"
PRODUCT_CARDS = "interactive.interactive.carousel_product.action.cards"
BODY_PARAMS = "template.template.components.1.body.parameters"
LIST_SECTION = ("interactive", "action", "sections", 0)
ROW = (*LIST_SECTION, "rows", 0)
REPLY = ("interactive", "action", "buttons", 0)
FLOW_PARAMS = ("interactive", "action", "parameters")
CARD = ("interactive", "action", "cards", 0)
CALENDAR = ("template", "components", 1, "parameters", 2, "dateTime")
DOCUMENT = ("template", "components", 0, "parameters", 0)
ROW_DICT = {"id": "r", "title": "t"}


def _rows(count: int) -> list[dict[str, str]]:
    return [{"id": f"row-{n}", "title": f"row {n}"} for n in range(count)]


def _reply(title: str, button_id: str) -> dict[str, Any]:
    return {"type": "reply", "reply": {"id": button_id, "title": title}}


def _products(count: int) -> list[dict[str, str]]:
    return [{"product_retailer_id": f"SKU-{n}"} for n in range(count)]


RULES = [
    # Seed 004 'Interactive message' table and 'Interactive header'.
    pytest.param(
        "interactive_list",
        {("interactive", "body", "text"): "x" * 1025},
        f"{LIST}.body.text",
        "at most 1024",
        id="interactive body text is at most 1024 chars",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "footer", "text"): "x" * 61},
        f"{LIST}.footer.text",
        "at most 60",
        id="interactive footer is at most 60 chars",
    ),
    pytest.param(
        "interactive_button",
        {("interactive", "header"): {"type": "text", "text": "x" * 61}},
        f"{BUTTON}.header.text.text",
        "at most 60",
        id="interactive header text is at most 60",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "header"): {"type": "image", "image": {"id": "1"}}},
        f"{LIST}.header.type",
        "'text'",
        id="list header is text only",
    ),
    # Seed 004 'Interactive action' and 'Interactive section' (list).
    pytest.param(
        "interactive_list",
        {("interactive", "action", "button"): "x" * 21},
        f"{LIST}.action.button",
        "at most 20",
        id="list button is at most 20 chars",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "action", "button"): ""},
        f"{LIST}.action.button",
        "at least 1",
        id="list button is not empty",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "action", "sections"): []},
        f"{LIST}.action.sections",
        "at least 1",
        id="list has at least one section",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "action", "sections"): [{"title": "s", "rows": [ROW_DICT]}] * 11},
        f"{LIST}.action.sections",
        "at most 10",
        id="list has at most ten sections",
    ),
    pytest.param(
        "interactive_list",
        {(*LIST_SECTION, "title"): "x" * 25},
        f"{LIST}.action.sections.0.title",
        "at most 24",
        id="section title is at most 24",
    ),
    pytest.param(
        "interactive_list",
        {(*ROW, "id"): "x" * 201},
        f"{LIST}.action.sections.0.rows.0.id",
        "at most 200",
        id="row id is at most 200",
    ),
    pytest.param(
        "interactive_list",
        {(*ROW, "title"): "x" * 25},
        f"{LIST}.action.sections.0.rows.0.title",
        "at most 24",
        id="row title is at most 24",
    ),
    pytest.param(
        "interactive_list",
        {(*ROW, "description"): "x" * 73},
        f"{LIST}.action.sections.0.rows.0.description",
        "at most 72",
        id="row description is at most 72 chars",
    ),
    pytest.param(
        "interactive_list",
        {(*LIST_SECTION, "rows"): _rows(11)},
        f"{LIST}.action.sections",
        "at most 10 rows",
        id="list has at most ten rows in all",
    ),
    pytest.param(
        "interactive_list",
        {(*LIST_SECTION, "rows"): [ROW_DICT, {**ROW_DICT, "title": "u"}]},
        f"{LIST}.action.sections.0.rows.1.id",
        "repeats",
        id="row ids are unique",
    ),
    # Seed 004 'Interactive button' (reply buttons).
    pytest.param(
        "interactive_button",
        {(*REPLY, "type"): "url"},
        f"{BUTTON}.action.buttons.0.type",
        "'reply'",
        id="reply button type is reply",
    ),
    pytest.param(
        "interactive_button",
        {(*REPLY, "reply", "id"): "x" * 257},
        f"{BUTTON}.action.buttons.0.reply.id",
        "at most 256",
        id="reply id is at most 256",
    ),
    pytest.param(
        "interactive_button",
        {(*REPLY, "reply", "title"): "x" * 21},
        f"{BUTTON}.action.buttons.0.reply.title",
        "at most 20",
        id="reply title is at most 20",
    ),
    pytest.param(
        "interactive_button",
        {("interactive", "action", "buttons"): [_reply("Yes", "a"), _reply("Yes", "b")]},
        f"{BUTTON}.action.buttons.1.reply.title",
        "repeats",
        id="reply titles are unique",
    ),
    pytest.param(
        "interactive_button",
        {("interactive", "action", "buttons"): [_reply("Yes", "a"), _reply("No", "a")]},
        f"{BUTTON}.action.buttons.1.reply.id",
        "repeats",
        id="reply ids are unique",
    ),
    pytest.param(
        "interactive_button",
        {("interactive", "action", "buttons"): []},
        f"{BUTTON}.action.buttons",
        "at least 1",
        id="button message has a button",
    ),
    pytest.param(
        "interactive_button",
        {("interactive", "action", "buttons"): [_reply(str(n), str(n)) for n in range(4)]},
        f"{BUTTON}.action.buttons",
        "at most 3",
        id="button message has at most three",
    ),
    # Seed 004 'Interactive section' (multi-product) and 'Interactive message' table.
    pytest.param(
        "interactive_product_list",
        {("interactive", "header"): DELETE},
        "interactive.interactive.product_list.header",
        "Field required",
        id="product list needs a header",
    ),
    pytest.param(
        "interactive_product_list",
        {("interactive", "action", "sections", 0, "product_items"): _products(31)},
        "interactive.interactive.product_list.action.sections",
        "at most 30 products",
        id="product list has at most thirty products",
    ),
    pytest.param(
        "interactive_product_list",
        {("interactive", "action", "sections", 0, "product_items"): []},
        "interactive.interactive.product_list.action.sections.0.product_items",
        "at least 1",
        id="product section has a product",
    ),
    # Seed 004 'Interactive action parameters' (flow).
    pytest.param(
        "interactive_flow_minimal",
        {("interactive", "action", "name"): "flows"},
        "interactive.interactive.flow.action.name",
        "'flow'",
        id="flow action name is flow",
    ),
    pytest.param(
        "interactive_flow_minimal",
        {(*FLOW_PARAMS, "flow_message_version"): "2"},
        f"{FLOW}.flow_message_version",
        "'3'",
        id="flow message version is 3",
    ),
    pytest.param(
        "interactive_flow_minimal",
        {(*FLOW_PARAMS, "flow_message_version"): 3},
        f"{FLOW}.flow_message_version",
        "'3'",
        id="flow message version is the string 3",
    ),
    pytest.param(
        "interactive_flow_minimal",
        {(*FLOW_PARAMS, "flow_cta"): "x" * 21},
        f"{FLOW}.flow_cta",
        "at most 20",
        id="flow cta is at most 20 chars",
    ),
    pytest.param(
        "interactive_flow_minimal",
        {(*FLOW_PARAMS, "flow_action"): "jump"},
        f"{FLOW}.flow_action",
        "'navigate' or 'data_exchange'",
        id="flow action is navigate or data exchange",
    ),
    pytest.param(
        "interactive_flow_extra_fields",
        {(*FLOW_PARAMS, "flow_action"): "data_exchange"},
        f"{FLOW}.flow_action_payload",
        "only with flow_action 'navigate'",
        id="flow action payload goes only with navigate",
    ),
    pytest.param(
        "interactive_flow_extra_fields",
        {(*FLOW_PARAMS, "flow_action_payload"): DELETE},
        f"{FLOW}.flow_action_payload",
        "required",
        id="navigate needs a flow action payload",
    ),
    pytest.param(
        "interactive_flow_extra_fields",
        {(*FLOW_PARAMS, "flow_action_payload", "data"): {}},
        f"{FLOW}.flow_action_payload.data",
        "must not be empty",
        id="flow data is not empty",
    ),
    # Seed 004 'Interactive action' (cta_url, location request) and the catalog example.
    pytest.param(
        "interactive_cta_url",
        {("interactive", "action", "name"): "url"},
        "interactive.interactive.cta_url.action.name",
        "'cta_url'",
        id="cta url action name is cta_url",
    ),
    pytest.param(
        "interactive_cta_url",
        {("interactive", "action", "parameters", "display_text"): DELETE},
        "interactive.interactive.cta_url.action.parameters.display_text",
        "Field required",
        id="cta url needs display text",
    ),
    pytest.param(
        "interactive_cta_url",
        {("interactive", "action", "parameters", "url"): DELETE},
        "interactive.interactive.cta_url.action.parameters.url",
        "Field required",
        id="cta url needs a url",
    ),
    pytest.param(
        "interactive_location_request",
        {("interactive", "action", "name"): "location"},
        "interactive.interactive.location_request_message.action.name",
        "'send_location'",
        id="location request action name is send_location",
    ),
    pytest.param(
        "interactive_contact_request",
        {("interactive", "action", "name"): "contact"},
        "interactive.interactive.contact_request.action.name",
        "'request_contact_info'",
        id="contact request action name is request_contact_info",
    ),
    pytest.param(
        "interactive_catalog_message",
        {("interactive", "action", "name"): "catalog"},
        "interactive.interactive.catalog_message.action.name",
        "'catalog_message'",
        id="catalog action name is catalog_message",
    ),
    pytest.param(
        "interactive_list",
        {("interactive", "type"): "poll"},
        "interactive.interactive",
        "interactive.type must be",
        id="unknown interactive type is named",
    ),
    # Seed 004 carousel card tables.
    pytest.param(
        "interactive_product_carousel",
        {(*CARD, "card_index"): 10},
        f"{PRODUCT_CARDS}.0.card_index",
        "less than or equal to 9",
        id="card index is 0 to 9",
    ),
    pytest.param(
        "interactive_product_carousel",
        {("interactive", "action", "cards", 1, "card_index"): 0},
        f"{PRODUCT_CARDS}.1.card_index",
        "repeats",
        id="product card indexes are unique",
    ),
    pytest.param(
        "interactive_media_carousel",
        {("interactive", "action", "cards", 1, "card_index"): 0},
        f"{MEDIA_CARDS}.1.card_index",
        "repeats",
        id="media card indexes are unique",
    ),
    pytest.param(
        "interactive_media_carousel",
        {(*CARD, "header"): {"type": "document", "document": {"link": "https://x/y.pdf"}}},
        f"{MEDIA_CARDS}.0.header",
        "'image', 'video'",
        id="media card header is image or video",
    ),
    pytest.param(
        "interactive_media_carousel",
        {
            ("interactive", "action", "cards", 1, "header"): {
                "type": "video",
                "video": {"link": "https://example.com/v.mp4"},
            }
        },
        f"{MEDIA_CARDS}.1.header.type",
        "like the first card",
        id="media cards share header type",
    ),
    pytest.param(
        "interactive_media_carousel",
        {(*CARD, "body", "text"): "x" * 161},
        f"{MEDIA_CARDS}.0.body.text",
        "at most 160",
        id="media card body is at most 160 chars",
    ),
    pytest.param(
        "interactive_media_carousel",
        {(*CARD, "body", "text"): "a\nb\nc\nd"},
        f"{MEDIA_CARDS}.0.body.text",
        "at most 2 line breaks",
        id="media card body has at most two line breaks",
    ),
    pytest.param(
        "interactive_media_carousel",
        {(*CARD, "action", "parameters", "display_text"): "x" * 21},
        f"{MEDIA_CARDS}.0.action.parameters.display_text",
        "at most 20",
        id="media card display text is at most 20 chars",
    ),
    # Seed 004 media messages: "Only one of id or link is required (not both)".
    pytest.param(
        "image_id",
        {("image", "link"): "https://example.com/a.jpg"},
        "image.image.link",
        "not both",
        id="image has id or link not both",
    ),
    pytest.param(
        "audio_id",
        {("audio", "id"): DELETE},
        "audio.audio.id",
        "give 'id'",
        id="audio has id or link",
    ),
    pytest.param(
        "video_link",
        {("video", "id"): "1"},
        "video.video.link",
        "not both",
        id="video has id or link not both",
    ),
    pytest.param(
        "document_link",
        {("document", "link"): DELETE},
        "document.document.id",
        "give 'id'",
        id="document has id or link",
    ),
    pytest.param(
        "sticker_id",
        {("sticker", "link"): "https://example.com/s.webp"},
        "sticker.sticker.link",
        "not both",
        id="sticker has id or link not both",
    ),
    pytest.param(
        "image_link",
        {("image", "link"): "ftp://example.com/a.jpg"},
        "image.image.link",
        "http:// or https://",
        id="hosted media link is http",
    ),
    pytest.param(
        "interactive_header_video_id",
        {("interactive", "header", "video", "link"): "https://v"},
        f"{BUTTON}.header.video.video.link",
        "not both",
        id="interactive header media one source",
    ),
    pytest.param(
        "template_media",
        {(*DOCUMENT, "document", "id"): "1"},
        "template.template.components.0.header.parameters.0.document.document.link",
        "not both",
        id="template header media has id or link not both",
    ),
    # Seed 004 'Image/Document/Video parameter': "Caption is not supported".
    pytest.param(
        "template_media",
        {(*DOCUMENT, "document", "caption"): "hi"},
        "template.template.components.0.header.parameters.0.document.document.caption",
        "Extra inputs",
        id="template document parameter has no caption",
    ),
    pytest.param(
        "template_media",
        {DOCUMENT: {"type": "image", "image": {"id": "1", "filename": "a.png"}}},
        "template.template.components.0.header.parameters.0.image.image.filename",
        "document parameters only",
        id="template image parameter has no filename",
    ),
    # Seed 004 'DateTime'.
    pytest.param(
        "template_media",
        {(*CALENDAR, "hour"): DELETE},
        f"{BODY_PARAMS}.2.dateTime.dateTime.hour",
        "required with the other calendar",
        id="date time calendar fields go together",
    ),
    pytest.param(
        "template_media",
        {(*CALENDAR, "timestamp"): "1707232588000"},
        f"{BODY_PARAMS}.2.dateTime.dateTime.timestamp",
        "alone",
        id="date time timestamp goes alone",
    ),
    pytest.param(
        "template_media",
        {CALENDAR: {"fallbackValue": "soon"}},
        f"{BODY_PARAMS}.2.dateTime.dateTime",
        "or timestamp alone",
        id="date time needs calendar fields or a timestamp",
    ),
    # Seed 004 'Currency': amount1000 is a String of minor units.
    pytest.param(
        "template_media",
        {("template", "components", 1, "parameters", 1, "currency", "amount1000"): 100990},
        f"{BODY_PARAMS}.1.currency.currency.amount1000",
        "valid string",
        id="currency amount is a string",
    ),
    # Seed 004 'Text parameter' and 'Component'.
    pytest.param(
        "template_text",
        {("template", "components", 0, "parameters", 0, "text"): ""},
        "template.template.components.0.body.parameters.0.text.text",
        "at least 1",
        id="template text parameter is not empty",
    ),
    pytest.param(
        "template_interactive",
        {("template", "components", 3, "parameters"): [{"type": "payload", "payload": "p"}]},
        "template.template.components.3.button.parameters.0.type",
        "takes text",
        id="url button takes a text parameter",
    ),
    pytest.param(
        "template_interactive",
        {("template", "components", 2, "sub_type"): "quick_reply"},
        "template.template.components.2.button.sub_type",
        "not both",
        id="button sub type is spelled one way at a time",
    ),
    pytest.param(
        "template_interactive",
        {("template", "components", 2, "subType"): "call"},
        "template.template.components.2.button.subType",
        "'quickReply'",
        id="button sub type is a documented one",
    ),
    pytest.param(
        "template_carousel",
        {("components", 1, "cards", 0, "components", 2, "index"): "10"},
        "template.template.components.1.carousel.cards.0.components.2.button.index",
        "pattern",
        id="card button index is a digit",
    ),
    pytest.param(
        "template_carousel",
        {
            ("components", 1, "cards", 0, "components"): [
                {"type": "header", "parameters": [{"type": "image", "image": {"id": "1"}}]}
            ]
        },
        "template.template.components.1.carousel.cards.0.components",
        "1+ buttons",
        id="carousel card has a button",
    ),
    pytest.param(
        "template_components_beside_template",
        {
            ("template", "components"): [
                {"type": "body", "parameters": [{"type": "text", "text": "t"}]}
            ]
        },
        "template.components",
        "not both",
        id="components go inside or beside template",
    ),
    pytest.param(
        "template_limited_time_offer",
        {("template", "components", 1, "parameters", 0, "expiration_time_ms"): 1},
        "template.template.components.1.limited_time_offer.parameters.0.expiration_time_ms",
        "inside limited_time_offer",
        id="offer expiry is given once",
    ),
    # Seed 004 'Name', 'Location message', 'Text message'.
    pytest.param(
        "contacts",
        {("contacts", 0, "name"): {"formattedName": "John Smith"}},
        "contacts.contacts.0.name",
        "with formattedName",
        id="contact name has a part beside formatted name",
    ),
    pytest.param(
        "contacts",
        {("contacts", 0, "name", "formattedName"): DELETE},
        "contacts.contacts.0.name.formattedName",
        "Field required",
        id="contact name has a formatted name",
    ),
    pytest.param(
        "location",
        {("location", "latitude"): 90.5},
        "location.location.latitude",
        "less than or equal to 90",
        id="latitude is -90 to 90",
    ),
    pytest.param(
        "location",
        {("location", "longitude"): -180.5},
        "location.location.longitude",
        "greater than or equal to -180",
        id="longitude is -180 to 180",
    ),
    pytest.param(
        "text",
        {("text", "body"): "x" * 4097},
        "text.text.body",
        "at most 4096",
        id="text body is at most 4096 chars",
    ),
    pytest.param(
        "text",
        {("text", "body"): ""},
        "text.text.body",
        "at least 1",
        id="text body is not empty",
    ),
    # Unknown keys are typos, and the seed's Meta-style "to" belongs to the envelope.
    pytest.param(
        "text",
        {("previewURL",): True},
        "text.previewURL",
        "Extra inputs",
        id="misspelt key is refused",
    ),
    pytest.param(
        "interactive_location_request",
        {("to",): "+4790000000"},
        "interactive.to",
        "Extra inputs",
        id="recipient inside the message is refused",
    ),
    pytest.param(
        "text",
        {("type",): "poll"},
        "",
        "'template', 'text'",
        id="unknown message type is named",
    ),
]


@pytest.mark.parametrize(("fixture", "changes", "path", "message"), RULES)
def test_broken_rule_is_reported_at_its_field(
    fixture: str, changes: dict[tuple[str | int, ...], Any], path: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_message(changed(fixture, changes))

    paths = error_paths(caught.value)
    assert path in paths, paths
    assert message in paths[path]


# --- spellings the seed mixes ------------------------------------------------------------

CARD_BUTTON = ("components", 1, "cards", 0, "components", 2)


@pytest.mark.parametrize(
    ("fixture", "button", "key", "value"),
    [
        pytest.param("template_interactive", ("template", "components", 2), "sub_type",
                     "quick_reply", id="interactive template writes subType quickReply"),
        pytest.param("template_limited_time_offer", ("template", "components", 3), "subType",
                     "url", id="limited-time offer writes sub_type"),
        pytest.param("template_catalog", ("template", "components", 1), "subType", "catalog",
                     id="catalog template writes sub_type CATALOG"),
        pytest.param("template_carousel", CARD_BUTTON, "subType", "quickReply",
                     id="carousel card writes sub_type quick_reply"),
    ],
)  # fmt: skip
def test_button_in_either_spelling_is_written_as_its_template_kind_writes_it(
    fixture: str, button: tuple[str | int, ...], key: str, value: str
) -> None:
    data = load(fixture)
    node: Any = data
    for part in button:
        node = node[part]
    node.pop("subType", None)
    node.pop("sub_type", None)
    node[key] = value

    assert parse_message(data).to_wire() == expected_wire(fixture)


@pytest.mark.parametrize(
    ("fixture", "given_at", "given", "written_at", "written"),
    [
        pytest.param("template_interactive", ("template", "components", 3, "index"), "1",
                     ("template", "components", 3, "index"), 1,
                     id="top-level button index as a number"),
        pytest.param("template_carousel", (*CARD_BUTTON, "index"), 1,
                     ("template", *CARD_BUTTON, "index"), "1",
                     id="carousel card button index as a string"),
    ],
)  # fmt: skip
def test_button_index_is_written_as_the_template_kind_writes_it(
    fixture: str,
    given_at: tuple[str | int, ...],
    given: Any,
    written_at: tuple[str | int, ...],
    written: Any,
) -> None:
    node: Any = parse_message(changed(fixture, {given_at: given})).to_wire()
    for part in written_at:
        node = node[part]

    assert node == written


def test_flat_limited_time_offer_parameter_is_written_nested() -> None:
    path = ("template", "components", 1, "parameters", 0)
    data = changed("template_limited_time_offer", {path: {
        "type": "limited_time_offer", "expiration_time_ms": 1707232588000}})  # fmt: skip

    assert parse_message(data).to_wire() == load("template_limited_time_offer")


def test_date_time_parts_keep_the_type_they_were_given() -> None:
    calendar = ("template", "components", 1, "parameters", 2, "dateTime")
    data = changed("template_media", {(*calendar, "year"): "1977", (*calendar, "month"): 2})

    wire = parse_message(data).to_wire()

    assert wire == data


def test_date_time_given_as_a_timestamp_alone_is_accepted() -> None:
    calendar = ("template", "components", 1, "parameters", 2, "dateTime")
    data = changed("template_media", {calendar: {"fallbackValue": "soon", "timestamp": 1}})

    assert parse_message(data).to_wire() == data


# --- Python construction and the schema ------------------------------------------------


def test_models_built_in_python_write_the_seed_form() -> None:
    message = TemplateMessage(
        template=Template(
            name="yourTemplate",
            language=Language(code="en"),
            components=[
                HeaderComponent(parameters=[ImageParameter(image=Media(id="1"))]),
                BodyComponent(parameters=[TextParameter(text="Ann", parameterName="name")]),
                ButtonComponent(subType="quickReply", index=0,
                                parameters=[PayloadParameter(payload="yes")]),
            ],
        )
    )  # fmt: skip

    assert message.to_wire()["template"]["components"] == [
        {"type": "header", "parameters": [{"type": "image", "image": {"id": "1"}}]},
        {"type": "body", "parameters": [{"type": "text", "text": "Ann", "parameterName": "name"}]},
        {"type": "button", "subType": "quickReply", "index": 0,
         "parameters": [{"type": "payload", "payload": "yes"}]},
    ]  # fmt: skip
    assert TextMessage(text=Text(body="Hi"), previewUrl=True).to_wire() == {
        "type": "text", "previewUrl": True, "text": {"body": "Hi"},
    }  # fmt: skip


def test_json_schema_offers_every_message_type_and_both_button_spellings() -> None:
    schema = message_json_schema()

    assert set(schema["discriminator"]["mapping"]) == {
        "template", "text", "image", "audio", "video", "document", "sticker", "location",
        "contacts", "interactive",
    }  # fmt: skip
    button = schema["$defs"]["ButtonComponent"]["properties"]
    assert {"subType", "sub_type"} <= set(button)
    assert {"quickReply", "quick_reply", "CATALOG"} <= set(button["sub_type"]["enum"])
    json.dumps(schema)
