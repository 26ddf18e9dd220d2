"""A campaign's message composed per person: the prepared renderer fills each person's
values and the media ids, and every person's message is still validated."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.campaigns import message_spec
from dispatcher.campaigns.compose import compose, composer, content_key
from dispatcher.campaigns.message_spec import InvalidMessage
from dispatcher.campaigns.render import MissingValue
from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.preparation.batching import json_text

TREE: dict[str, Any] = {
    "type": "template",
    "template": {
        "name": "spring",
        "language": {"code": "en"},
        "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"file": "a.png"}}]},
            {
                "type": "body",
                "parameters": [
                    {"type": "text", "text": "{first_name}"},
                    {"type": "text", "text": "{{literal}} {code}"},
                    {"type": "text", "text": "fixed {{braces}}"},
                ],
            },
        ],
    },
    "flags": [1, True, None, "{code}", ["x", "{{y}}"]],
}


def _rendered(first_name: str, code: str) -> dict[str, Any]:
    """``TREE`` as rendered for these values, with the media id ``M1``."""
    return {
        "type": "template",
        "template": {
            "name": "spring",
            "language": {"code": "en"},
            "components": [
                {"type": "header", "parameters": [{"type": "image", "image": {"id": "M1"}}]},
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": first_name},
                        {"type": "text", "text": f"{{literal}} {code}"},
                        {"type": "text", "text": "fixed {braces}"},
                    ],
                },
            ],
        },
        "flags": [1, True, None, code, ["x", "{y}"]],
    }


@pytest.mark.parametrize(
    "values",
    [
        {"first_name": "Ann", "code": "C1"},
        {"first_name": "Ærlig {x}", "code": "{{}}"},
    ],
)
def test_the_prepared_renderer_fills_each_persons_values_and_the_media_id(
    values: dict[str, str],
) -> None:
    render = message_spec.renderer(TREE, {"a.png": "M1"})
    assert render(values) == _rendered(values["first_name"], values["code"])
    assert render({"first_name": "Bo", "code": "C2"}) == _rendered("Bo", "C2")


def test_a_missing_value_is_named_by_the_prepared_renderer_too() -> None:
    render = message_spec.renderer(TREE, {})
    with pytest.raises(MissingValue) as caught:
        render({"first_name": "Ann"})
    assert caught.value.column == "code"


def test_a_tree_without_columns_is_rendered_once() -> None:
    tree = {"type": "text", "text": {"body": "Hello {{all}}"}}
    render = message_spec.renderer(tree, {})
    assert render({}) == {"type": "text", "text": {"body": "Hello {all}"}}
    assert render({}) is render({"any": "thing"})


def _spec(**extra: Any) -> CampaignSpec:
    return CampaignSpec.model_validate(
        {
            "name": "c",
            "sender": {"source": "+4712345678"},
            "message": {"type": "text", "text": {"body": "Hi {first_name}, use {code}"}},
            "recipients": "r.csv",
            **extra,
        }
    )


def test_each_persons_message_is_validated_whole() -> None:
    compose_one = composer(_spec(), {})
    assert compose_one({"first_name": "Ann", "code": "C1"})["text"]["body"] == "Hi Ann, use C1"
    with pytest.raises(InvalidMessage):
        compose_one({"first_name": "A" * 5000, "code": "C1"})  # over the 4,096 of a body


def test_defaults_fill_empty_cells() -> None:
    spec = _spec(defaults={"first_name": "friend"})
    assert compose(spec, {"first_name": "", "code": "C1"}, {})["text"]["body"] == (
        "Hi friend, use C1"
    )


def test_the_content_key_ignores_key_order_and_tells_messages_apart() -> None:
    assert content_key({"a": 1, "b": {"c": "é", "d": 2}}) == content_key(
        {"b": {"d": 2, "c": "é"}, "a": 1}
    )
    assert content_key({"a": "x"}) != content_key({"a": "y"})


def test_an_integer_past_64_bits_is_keyed_and_written_as_json_writes_it() -> None:
    big = {"a": 10**30, "b": "é"}
    assert content_key(big) != content_key({"a": 10**30 + 1, "b": "é"})
    assert json.loads(json_text(big)) == big
    assert json.loads(json_text({"a": 1, "b": ["x"]})) == {"a": 1, "b": ["x"]}
