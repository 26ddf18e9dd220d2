"""Meta's webhooks about the sender (``message_template_status_update``,
``phone_number_quality_update``, ``account_update``) read into ``SenderEvent``s, and how
the receiver keeps them (tests/data/webhooks/meta_sender/, in the shapes of Meta's
public reference: the seeds are silent on these fields)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from dispatcher.providers import InvalidReport, SenderEvent, parse_callback
from dispatcher.providers.meta.callbacks import parse_webhook, read_webhook
from dispatcher.tracking.intake import ReportState, read_body
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "webhooks" / "meta_sender"
WABA = "102290129340398"
AT = datetime(2025, 12, 6, 5, 46, 40, tzinfo=UTC)


def event_of(name: str) -> SenderEvent:
    [event] = read_webhook((DATA / f"{name}.json").read_bytes()).sender_events
    return event


def test_a_paused_template_names_itself_its_language_and_why() -> None:
    event = event_of("template_paused")
    assert event == SenderEvent(
        "template", "PAUSED", AT, WABA,
        template_name="hello", template_language="en", template_status="PAUSED",
        detail="FIRST_PAUSE; Your WhatsApp message template has been paused for 3 hours "
        "due to low quality.",
    )  # fmt: skip


def test_a_disabled_template_says_when_and_a_reason_of_none_is_no_reason() -> None:
    event = event_of("template_disabled")
    assert (event.template_name, event.template_language) == ("order_ready", "en-US")
    assert event.template_status == "DISABLED"
    assert event.detail == "disabled on 2025-12-06"


@pytest.mark.parametrize(
    ("name", "quality", "limit"),
    [("quality_flagged", "RED", "TIER_10K"), ("quality_upgrade", None, "TIER_10K")],
)
def test_a_flagged_number_is_red_and_a_limit_change_says_no_quality(
    name: str, quality: str | None, limit: str
) -> None:
    event = event_of(name)
    assert (event.kind, event.business_number) == ("quality", "+4790000000")
    assert (event.quality, event.limit, event.account) == (quality, limit, WABA)


@pytest.mark.parametrize(
    ("name", "blocked"),
    [
        ("account_disabled", "the WhatsApp Business Account is disabled since December 6, 2026"),
        (
            "account_restricted",
            "business-initiated messaging is restricted until 2025-12-13 04:26 UTC",
        ),
        ("account_deleted", "the WhatsApp Business Account was deleted"),
        ("account_reinstated", None),
        ("account_violation", None),
    ],
)
def test_an_account_is_blocked_only_by_what_stops_its_campaigns(
    name: str, blocked: str | None
) -> None:
    event = event_of(name)
    assert (event.kind, event.account, event.business_number) == ("account", WABA, None)
    assert event.blocked == blocked


def test_the_full_reading_holds_the_same_events_and_names_their_fields() -> None:
    body = (DATA / "template_paused.json").read_bytes()
    webhook = parse_webhook(body)
    assert webhook.sender_events == tuple(read_webhook(body).sender_events)
    assert webhook.fields == ("message_template_status_update",)
    assert webhook.other_fields == ()


def test_events_are_stored_for_the_applier_and_unreadable_ones_kept_as_ignored() -> None:
    assert read_body("meta", (DATA / "account_disabled.json").read_bytes()).state is (
        ReportState.RECEIVED
    )
    no_name = json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": "message_template_status_update",
                                            "value": {"event": "PAUSED"}}]}],
    }).encode()  # fmt: skip
    assert not parse_callback("meta", no_name).sender_events
    assert read_body("meta", no_name).state is ReportState.IGNORED


def test_values_of_the_wrong_type_are_read_as_absent() -> None:
    body = json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": 102290129340398, "time": "soon", "changes": [
            {"field": "phone_number_quality_update",
             "value": {"event": "FLAGGED", "display_phone_number": 4790000000}},
            {"field": "account_update", "value": {"event": "DISABLED_UPDATE", "ban_info": "x"}},
        ]}],
    }).encode()  # fmt: skip
    quality, account = read_webhook(body).sender_events
    assert (quality.account, quality.at, quality.business_number) == (WABA, None, None)
    assert quality.quality == "RED"
    assert account.blocked is None and account.detail == "ban state not given"


def test_a_body_of_another_field_only_is_still_refused() -> None:
    body = json.dumps({
        "object": "whatsapp_business_account",
        "entry": [{"id": WABA, "changes": [{"field": "calls", "value": {}}]}],
    }).encode()  # fmt: skip
    with pytest.raises(InvalidReport, match="calls"):
        read_webhook(body)
