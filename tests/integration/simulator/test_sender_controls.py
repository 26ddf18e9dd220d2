"""The simulator's controls for tests and benchmarks over real HTTP: a template's status
and a number's health and quality changed mid-run, as both APIs then report them, and
Meta's webhooks about them (signed as its status webhooks are)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest

from tests.integration.simulator.test_meta_webhooks import (
    NUMBER_ID,
    SECRET,
    WABA_ID,
    Receiver,
    hello_template,
    meta_with_receiver,
)
from tests.unit.simulator.test_simulator import wait_until

pytestmark = pytest.mark.integration

PERSON = "+4791234567"
LINK_SOURCE = "/platformId/P/platformPartnerId/1/source/4790000000"
LINK_AUTH = ("demo", "demo")


def changes(receiver: Receiver, field: str) -> list[dict[str, Any]]:
    """The values of the signed webhooks of ``field`` the receiver took, checking each
    signature and envelope."""
    found = []
    for signature, raw in receiver.posts:
        expected = "sha256=" + hmac.new(SECRET.encode(), raw, hashlib.sha256).hexdigest()
        assert signature == expected
        [entry] = json.loads(raw)["entry"]
        [change] = entry["changes"]
        if change["field"] == field:
            assert entry["id"] == WABA_ID and isinstance(entry["time"], int)
            found.append(change["value"])
    return found


def send_hello(client: httpx.Client) -> httpx.Response:
    body = {"messaging_product": "whatsapp", "to": PERSON, "type": "template",
            "template": hello_template()}  # fmt: skip
    return client.post(f"/v23.0/{NUMBER_ID}/messages", json=body)


@pytest.mark.parametrize(("status", "code"), [("PAUSED", 132015), ("DISABLED", 132016)])
def test_a_template_paused_or_disabled_mid_run_fails_later_sends_and_meta_says_so(
    status: str, code: int
) -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        assert send_hello(client).status_code == 200
        answer = client.post(
            "/_simulator/templates/status", json={"name": "hello", "status": status}
        )
        assert answer.status_code == 200
        assert [(t["name"], t["status"]) for t in answer.json()["changed"]] == [("hello", status)]
        refused = send_hello(client)
        listed = client.get(f"/v23.0/{WABA_ID}/message_templates", params={"limit": 100})
        linked = client.get(LINK_SOURCE + "/templates", auth=LINK_AUTH)
        wait_until(lambda: changes(receiver, "message_template_status_update") != [])
    assert refused.status_code == 400 and refused.json()["error"]["code"] == code
    for page in (listed.json(), linked.json()):
        [hello] = [t for t in page["data"] if t["name"] == "hello"]
        assert hello["status"] == status
    [value] = changes(receiver, "message_template_status_update")
    assert value["event"] == status
    assert (value["message_template_name"], value["message_template_language"]) == ("hello", "en")
    assert value["message_template_id"] == int(hello["id"])


def test_a_template_approved_again_sends_again() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        for status in ("PAUSED", "APPROVED"):
            client.post("/_simulator/templates/status", json={"name": "hello", "status": status})
        assert send_hello(client).status_code == 200
        wait_until(lambda: len(changes(receiver, "message_template_status_update")) == 2)
    assert [v["event"] for v in changes(receiver, "message_template_status_update")] == [
        "PAUSED",
        "APPROVED",
    ]


def test_quality_red_is_reported_by_both_apis_and_flagged_by_meta() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        answer = client.post("/_simulator/sender", json={"quality_rating": "RED"})
        assert answer.json() == {"number": None, "health_status": "AVAILABLE",
                                 "quality_rating": "RED"}  # fmt: skip
        link = client.get(LINK_SOURCE, auth=LINK_AUTH).json()
        meta = client.get(f"/v23.0/{NUMBER_ID}", params={"fields": "quality_rating"}).json()
        wait_until(lambda: changes(receiver, "phone_number_quality_update") != [])
        client.post("/_simulator/sender", json={"quality_rating": "YELLOW"})
        wait_until(lambda: len(changes(receiver, "phone_number_quality_update")) == 2)
    assert link["qualityRating"] == "RED" and meta["quality_rating"] == "RED"
    flagged, unflagged = changes(receiver, "phone_number_quality_update")
    assert flagged["event"] == "FLAGGED" and unflagged["event"] == "UNFLAGGED"
    assert flagged["display_phone_number"] == "4790000000"
    assert flagged["current_limit"] == "TIER_UNLIMITED"


def test_a_number_turning_blocked_is_reported_and_meta_disables_the_account() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        client.post("/_simulator/sender", json={"number": NUMBER_ID, "health_status": "BLOCKED"})
        link = client.get(LINK_SOURCE, auth=LINK_AUTH).json()
        other = client.get(
            "/platformId/P/platformPartnerId/1/source/4790000001", auth=LINK_AUTH
        ).json()
        fields = client.get(f"/v23.0/{NUMBER_ID}", params={"fields": "health_status"}).json()
        wait_until(lambda: changes(receiver, "account_update") != [])
        client.post("/_simulator/sender", json={"health_status": "AVAILABLE"})
        wait_until(lambda: len(changes(receiver, "account_update")) == 2)
    assert link["overallHealthStatus"] == "BLOCKED" and link["errors"]
    assert other["overallHealthStatus"] == "AVAILABLE"  # only the number named
    assert fields["health_status"]["can_send_message"] == "BLOCKED"
    disabled, reinstated = changes(receiver, "account_update")
    assert disabled["event"] == "DISABLED_UPDATE"
    assert disabled["ban_info"]["waba_ban_state"] == "DISABLE"
    assert reinstated["ban_info"]["waba_ban_state"] == "REINSTATE"


def test_limited_and_yellow_change_the_reports_but_meta_sends_no_webhook() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        client.post(
            "/_simulator/sender",
            json={"number": "+4790000000", "health_status": "LIMITED", "quality_rating": "YELLOW"},
        )
        link = client.get(LINK_SOURCE, auth=LINK_AUTH).json()
        send_hello(client)
        wait_until(lambda: len(receiver.posts) == 3)  # the send's statuses only
    assert (link["overallHealthStatus"], link["qualityRating"]) == ("LIMITED", "YELLOW")
    assert link["additional_info"]
    assert changes(receiver, "account_update") == []
    assert changes(receiver, "phone_number_quality_update") == []


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("/_simulator/templates/status", {"name": "hello", "status": "ASLEEP"}, 400),
        ("/_simulator/templates/status", {"status": "PAUSED"}, 400),
        ("/_simulator/templates/status", {"name": "nope", "status": "PAUSED"}, 404),
        (
            "/_simulator/templates/status",
            {"name": "hello", "language": "fr", "status": "PAUSED"},
            404,
        ),
        ("/_simulator/sender", {"health_status": "SLEEPY"}, 400),
        ("/_simulator/sender", {"quality_rating": "BLUE"}, 400),
        ("/_simulator/sender", {"number": "nobody", "quality_rating": "RED"}, 400),
        ("/_simulator/sender", [1, 2], 400),
    ],
)
def test_controls_refuse_what_they_cannot_do(path: str, body: Any, status: int) -> None:
    with meta_with_receiver(Receiver()) as client:
        assert client.post(path, json=body).status_code == status
