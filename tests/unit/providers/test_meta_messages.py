"""A campaign's message, written in LINK's form, goes to Meta's Cloud API in Meta's form:
every message type of seed 004 'Messages', one person a request, ``to`` or
``recipient`` by the kind of identifier (seed 000)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.messages import parse_message
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.providers.meta.models import cloud_message

DATA = Path(__file__).resolve().parents[2] / "data" / "messages"
FIXTURES = sorted(DATA.glob("*.json"))
PHONE_NUMBER_ID = "106540352242922"
SNAKE_KEY = re.compile(r"^[a-z0-9_]+$")


def written(name: str) -> dict[str, Any]:
    """A seed example as the campaign stores it: parsed and written in LINK's form."""
    data = json.loads((DATA / f"{name}.json").read_text(encoding="utf-8"))
    return parse_message(data).to_wire()


def spec(message: dict[str, Any] | None = None) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "meta",
            "sender": {
                "source": "+4790000000",
                "provider": "meta",
                "phone_number_id": PHONE_NUMBER_ID,
            },
            "message": message or {"type": "text", "text": {"body": "hi"}},
            "recipients": ["r.csv"],
        }
    )


def client() -> MetaClient:
    return MetaClient(MetaCredentials("https://graph.test", "token", "v23.0", "102290129340398"))


def keys(value: Any, skip: tuple[str, ...] = ()) -> set[str]:
    """Every key at any depth, except under the keys in ``skip``."""
    if isinstance(value, dict):
        found = set(value)
        for key, inner in value.items():
            if key not in skip:
                found |= keys(inner, skip)
        return found
    if isinstance(value, list):
        return set().union(*(keys(v, skip) for v in value)) if value else set()
    return set()


@pytest.mark.parametrize("path", FIXTURES, ids=[path.stem for path in FIXTURES])
def test_every_seed_message_goes_out_with_meta_s_snake_case_keys_only(path: Path) -> None:
    message = written(path.stem)
    original = copy.deepcopy(message)

    translated = cloud_message(message)

    # Flow data keys are the flow's own (seed 004 'Flow'): never renamed.
    assert all(SNAKE_KEY.match(key) for key in keys(translated, skip=("data",)))
    assert translated["type"] == message["type"]
    assert message == original  # the stored message is left as it was


@pytest.mark.parametrize(
    "name",
    [p.stem for p in FIXTURES if p.stem.startswith(("image", "audio", "video", "document",
                                                    "sticker", "location", "interactive"))],
)  # fmt: skip
def test_media_location_and_interactive_messages_are_already_meta_s_form(name: str) -> None:
    assert cloud_message(written(name)) == written(name)


def test_a_text_message_takes_its_preview_flag_inside_the_text() -> None:
    assert cloud_message(written("text")) == {
        "type": "text",
        "text": {"body": "Your text here!", "preview_url": False},
    }
    assert cloud_message({"type": "text", "text": {"body": "b"}}) == {
        "type": "text",
        "text": {"body": "b"},
    }


def test_a_contact_card_is_written_in_snake_case() -> None:
    [contact] = cloud_message(written("contacts"))["contacts"]

    assert contact["name"] == {
        "formatted_name": "John Smith",
        "first_name": "John",
        "last_name": "Smith",
    }
    assert contact["addresses"][0]["country_code"] == "us"
    assert contact["phones"][1] == {
        "phone": "+1 (650) 555-1234",
        "type": "WORK",
        "wa_id": "16505551234",
    }
    assert contact["urls"] == [{"url": "https://www.facebook.com", "type": "WORK"}]


def test_template_currency_and_date_time_parameters_take_meta_s_names() -> None:
    body = cloud_message(written("template_media"))["template"]["components"][1]

    assert body["parameters"][1:] == [
        {
            "type": "currency",
            "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100990},
        },
        {
            "type": "date_time",
            "date_time": {
                "fallback_value": "February 25, 1977 03:33PM",
                "day_of_week": 5,
                "day_of_month": 25,
                "year": 1977,
                "month": 2,
                "hour": 15,
                "minute": 33,
            },
        },
    ]


def test_a_date_time_given_as_a_timestamp_goes_as_its_fallback_value() -> None:
    message = written("template_media")
    message["template"]["components"][1]["parameters"][2]["dateTime"] = {
        "fallbackValue": "tomorrow",
        "timestamp": 1767225600000,
    }

    parameter = cloud_message(message)["template"]["components"][1]["parameters"][2]

    assert parameter == {"type": "date_time", "date_time": {"fallback_value": "tomorrow"}}


def test_template_buttons_take_meta_s_sub_types_and_string_indexes() -> None:
    buttons = cloud_message(written("template_interactive"))["template"]["components"][2:]

    assert [(b["sub_type"], b["index"]) for b in buttons] == [("quick_reply", "0"), ("url", "1")]
    assert "subType" not in buttons[0]


def test_a_named_parameter_and_a_flow_token_take_meta_s_names() -> None:
    named = cloud_message(written("template_named_parameters"))["template"]["components"][0]
    assert named["parameters"][0] == {
        "type": "text",
        "text": "Your text",
        "parameter_name": "nombre",
    }
    flow = parse_message(
        {
            "type": "template",
            "template": {
                "name": "book",
                "language": {"code": "en"},
                "components": [
                    {
                        "type": "button",
                        "subType": "flow",
                        "index": 0,
                        "parameters": [{"type": "action", "action": {"flowToken": "tok"}}],
                    }
                ],
            },
        }
    ).to_wire()
    [button] = cloud_message(flow)["template"]["components"]
    assert button["parameters"] == [{"type": "action", "action": {"flow_token": "tok"}}]


@pytest.mark.parametrize(
    ("name", "sub_types"),
    [
        ("template_carousel", []),  # the card buttons are checked below
        ("template_catalog", ["CATALOG"]),
        ("template_coupon_code", ["copy_code"]),
        ("template_limited_time_offer", ["copy_code", "url"]),
    ],
)
def test_templates_written_snake_case_in_seed_004_keep_their_spelling(
    name: str, sub_types: list[str]
) -> None:
    components = cloud_message(written(name))["template"]["components"]

    assert [c["sub_type"] for c in components if c["type"] == "button"] == sub_types


def test_carousel_cards_keep_their_buttons_and_headers() -> None:
    carousel = cloud_message(written("template_carousel"))["template"]["components"][1]
    [card] = carousel["cards"]

    assert card["components"][0]["parameters"] == [{"type": "image", "image": {"id": "1234567"}}]
    assert [(c["sub_type"], c["index"]) for c in card["components"][2:]] == [
        ("quick_reply", "0"),
        ("url", "1"),
    ]


def test_components_given_beside_the_template_go_inside_it() -> None:
    beside = json.loads((DATA / "template_components_beside_template.json").read_text())

    template = cloud_message(beside)["template"]

    assert "components" not in cloud_message(beside)
    assert template["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "Your text"}]}
    ]


def test_a_template_without_components_sends_none() -> None:
    assert cloud_message(written("template_request_contact_info")) == {
        "type": "template",
        "template": {"name": "request_contact_info", "language": {"code": "en"}},
    }


@pytest.mark.parametrize(
    ("destination", "field"),
    [
        ("+4791234567", "to"),
        ("NO.13491208655302741918", "recipient"),  # a BSUID
        ("US.ENT.11815799212886844830", "recipient"),  # a parent BSUID
    ],
)
def test_a_phone_number_goes_as_to_and_a_bsuid_as_recipient(destination: str, field: str) -> None:
    request = client().request(
        spec(), "c1-b0000001", [destination], [written("text")],
        valid_until=None, event_report_gate=None, campaign_id=1,
    )  # fmt: skip

    wire = request.to_wire()

    assert wire == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        field: destination,
        "biz_opaque_callback_data": "c1-b0000001",
        "type": "text",
        "text": {"body": "Your text here!", "preview_url": False},
    }
    assert json.loads(request.body()) == wire
    assert request.path == f"/v23.0/{PHONE_NUMBER_ID}/messages"
    assert (request.provider, request.ref_id, request.destinations) == (
        "meta",
        "c1-b0000001",
        [destination],
    )


@pytest.mark.parametrize(
    ("destinations", "messages"),
    [
        (["+4791234567", "+4791234568"], [{"type": "text", "text": {"body": "a"}}]),
        ([], [{"type": "text", "text": {"body": "a"}}]),
        (["+4791234567"], [{"type": "text", "text": {"body": "a"}}] * 2),
    ],
)
def test_a_request_carries_exactly_one_person_and_one_message(
    destinations: list[str], messages: list[dict[str, Any]]
) -> None:
    with pytest.raises(ValueError, match="one"):
        client().request(
            spec(), "b", destinations, messages,
            valid_until=None, event_report_gate=None, campaign_id=1,
        )  # fmt: skip


def test_content_repeated_for_many_people_is_translated_once() -> None:
    meta = client()
    message = written("template_media")
    first = meta.request(spec(), "b1", ["+4791234567"], [message], valid_until=None,
                         event_report_gate=None, campaign_id=1)  # fmt: skip
    # The same content loaded again for the next person (a new object, equal).
    again = copy.deepcopy(message)
    second = meta.request(spec(), "b2", ["NO.123"], [again], valid_until=None,
                          event_report_gate=None, campaign_id=1)  # fmt: skip

    [content] = meta._contents.values()
    assert first.body().endswith(content + b"}") and second.body().endswith(content + b"}")
    assert first.to_wire()["template"] == second.to_wire()["template"]
    assert (first.to_wire()["to"], second.to_wire()["recipient"]) == ("+4791234567", "NO.123")


def test_personalised_contents_are_each_their_own() -> None:
    meta = client()
    bodies = [
        meta.request(
            spec(), f"b{n}", ["+4791234567"], [{"type": "text", "text": {"body": f"Hi {n}"}}],
            valid_until=None, event_report_gate=None, campaign_id=1,
        ).to_wire()["text"]["body"]
        for n in range(3)
    ]  # fmt: skip

    assert bodies == ["Hi 0", "Hi 1", "Hi 2"]


def test_a_spec_of_another_provider_cannot_build_a_meta_request() -> None:
    link_spec = CampaignSpec.model_validate(
        {
            "name": "link",
            "sender": {"source": "+4790000000"},
            "message": {"type": "text", "text": {"body": "hi"}},
            "recipients": ["r.csv"],
        }
    )
    with pytest.raises(ValueError, match="phone_number_id"):
        client().request(
            link_spec, "b", ["+4791234567"], [{"type": "text", "text": {"body": "a"}}],
            valid_until=None, event_report_gate=None, campaign_id=1,
        )  # fmt: skip
