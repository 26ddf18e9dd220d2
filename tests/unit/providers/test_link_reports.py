"""What LINK's callbacks say beyond a status: WhatsApp's message id and pricing in a
DLR's customParameters, and the message an incoming reply answers (seed 004's own
examples in tests/data/webhooks/)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dispatcher.providers import Pricing, ReplyContext
from dispatcher.providers.link.callbacks import parse_dlr, parse_incoming
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "webhooks"
WAMID = "wamid.HBgMMzU5ODgzNDk1NTgzFQIAERgSRDFEQzIyRDU0NUE4MzVCQzkyAA=="
SEED_PRICING = Pricing(model="PMP", category="marketing_lite", type="regular", billable=True)


@pytest.mark.parametrize(
    ("name", "wa_message_id", "pricing"),
    [
        ("dlr_sent.json", "a" + WAMID[2:], SEED_PRICING),  # the seed's "amid." kept
        ("dlr_sent_msisdn_and_bsuid.json", WAMID, SEED_PRICING),
        ("dlr_sent_bsuid_only.json", WAMID, SEED_PRICING),
        ("dlr_delivered.json", None, None),
        ("dlr_failed_meta_error.json", None, None),
    ],
)
def test_a_status_report_gives_the_whatsapp_message_id_and_pricing_the_seed_shows(
    name: str, wa_message_id: str | None, pricing: Pricing | None
) -> None:
    report = parse_dlr((DATA / name).read_bytes())
    assert (report.whatsapp_message_id, report.pricing) == (wa_message_id, pricing)


@pytest.mark.parametrize(
    ("billable", "expected"), [("true", True), ("false", False), (False, False), ("", None)]
)
def test_pricing_billable_is_read_as_link_writes_it(
    billable: object, expected: bool | None
) -> None:
    custom = {"pricingCategory": "service", "pricingBillable": billable}
    report = {"messageId": "m1", "resultCode": 112006, "customParameters": custom}
    pricing = parse_dlr(json.dumps(report).encode()).pricing
    assert pricing == Pricing(category="service", billable=expected)


def test_the_seed_reaction_answers_the_message_its_context_names() -> None:
    message = parse_incoming((DATA / "mo_reaction.json").read_bytes())
    assert message.reply_context == ReplyContext(
        "wamid.HBgNNDM2OTkxODI4MTM0OBUCABEYEkEyRjRFRjkzOEUwM0QwOTZCOAA=", "reaction"
    )


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("mo_*.json")))
def test_seed_messages_without_a_context_answer_nothing(name: str) -> None:
    message = parse_incoming((DATA / name).read_bytes())
    assert (message.reply_context is None) == (name != "mo_reaction.json")


def body(message: dict[str, Any]) -> bytes:
    return json.dumps(
        {"source": "+46000000001", "messageId": "x",
         "content": {"type": "WHATSAPP", "message": message}}
    ).encode()  # fmt: skip


CONTEXT = {"source": "46000000000", "id": "wamid.A"}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            {"contentType": "BUTTON", "context": CONTEXT,
             "button": {"text": "Yes please", "payload": "YES"}},
            ReplyContext("wamid.A", "button", "YES", "Yes please"),
        ),
        (
            {"contentType": "INTERACTIVE", "context": CONTEXT, "interactive": {
                "type": "button_reply", "button_reply": {"id": "b1", "title": "Book"}}},
            ReplyContext("wamid.A", "interactive", "b1", "Book"),
        ),
        (
            {"contentType": "INTERACTIVE", "context": CONTEXT, "interactive": {
                "type": "list_reply", "list_reply": {"id": "r2", "title": "Tuesday"}}},
            ReplyContext("wamid.A", "interactive", "r2", "Tuesday"),
        ),
        ({"contentType": "TEXT", "text": "when?", "context": CONTEXT},
         ReplyContext("wamid.A", "text")),
        ({"contentType": "TEXT", "text": "hm", "context": {"id": "  "}}, None),
        ({"contentType": "TEXT", "text": "hm", "context": "wamid.A"}, None),
    ],
)  # fmt: skip
def test_a_reply_says_which_message_it_answers_and_which_button_it_chose(
    message: dict[str, Any], expected: ReplyContext | None
) -> None:
    assert parse_incoming(body(message)).reply_context == expected
