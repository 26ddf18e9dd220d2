"""Which stored bodies a guardrail acts on at once (``intake.Received.urgent``)."""

from __future__ import annotations

import json

import pytest

from dispatcher.tracking.intake import _URGENT, _URGENT_HINTS, Kind, ReportState, read_body


def test_every_marker_holds_a_hint() -> None:
    # The hints are searched first: a marker holding neither would never be found.
    for marker in _URGENT:
        assert any(hint in marker for hint in _URGENT_HINTS), marker


def _link_dlr(description: str, code: int = 112006) -> bytes:
    return json.dumps(
        {
            "messageId": "m1",
            "resultCode": code,
            "resultDescription": description,
            "customParameters": {"msisdn": "+4790000001"},
        }
    ).encode()


@pytest.mark.parametrize(
    ("body", "urgent"),
    [
        (_link_dlr("Sent"), False),
        (_link_dlr("Failed (#131049)", 112403), False),
        (_link_dlr("Failed (#132015)", 112403), True),
        (_link_dlr("Failed (#132016)", 112403), True),
        (_link_dlr("Failed (#132012)", 112403), False),  # holds "13201", is not a marker
        (_link_dlr("user_update"), False),  # holds "_update", is not a marker
    ],
)
def test_link_reports(body: bytes, urgent: bool) -> None:
    received = read_body(Kind.DLR, body)
    assert received.state is ReportState.RECEIVED
    assert received.urgent is urgent


@pytest.mark.parametrize(
    "field",
    ["message_template_status_update", "phone_number_quality_update", "account_update"],
)
def test_meta_sender_events(field: str) -> None:
    change = {"field": field, "value": {}}
    entry = {"id": "1", "changes": [change]}
    body = json.dumps({"object": "whatsapp_business_account", "entry": [entry]}).encode()
    assert read_body(Kind.META, body).urgent
