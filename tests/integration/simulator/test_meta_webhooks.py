"""The simulator's Cloud API status webhooks over real HTTP: seed 002's envelope and
statuses, seed 000's BSUID fields, signed as Meta signs them (``X-Hub-Signature-256``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dispatcher.interfaces.servers import ServerThread
from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.simulator.identity import derive_bsuids
from tests.unit.simulator.test_simulator import wait_until

pytestmark = pytest.mark.integration

NUMBER_ID = "106540352242922"
WABA_ID = "102290129340398"
SECRET = "shh-secret"
PERSON = "+4791234567"
BSUID = "NO.12345678901234567890"


class Receiver:
    """A webhook endpoint keeping each body raw with its signature header; it answers the
    statuses in ``answers`` first, then 200."""

    def __init__(self, answers: list[int] | None = None) -> None:
        self.answers = list(answers or [])
        self.posts: list[tuple[str | None, bytes]] = []
        self.app = Starlette(routes=[Route("/webhooks/meta", self._take, methods=["POST"])])

    async def _take(self, request: Request) -> Response:
        assert request.headers["content-type"] == "application/json"
        body = await request.body()
        status = self.answers.pop(0) if self.answers else 200
        if status == 200:
            self.posts.append((request.headers.get("x-hub-signature-256"), body))
        return Response(status_code=status)

    def statuses(self) -> list[dict[str, Any]]:
        return [_status(json.loads(body)) for _, body in self.posts]


def _status(webhook: dict[str, Any]) -> dict[str, Any]:
    [entry] = webhook["entry"]
    [change] = entry["changes"]
    [status] = change["value"]["statuses"]
    result: dict[str, Any] = status
    return result


@contextmanager
def meta_with_receiver(receiver: Receiver, **settings: Any) -> Iterator[httpx.Client]:
    """A live simulator posting Meta webhooks to ``receiver``; a client with the token."""
    with ServerThread(receiver.app) as hooks:
        options = {
            "seed": 3,
            "dlr_delay_ms": 0,
            "callback_backoff_ms": 10,
            "meta_app_secret": SECRET,
            "record_requests": True,
            "meta_webhook_url": f"{hooks.url}/webhooks/meta",
            **settings,
        }
        with (
            ServerThread(create_app(SimulatorConfig(**options))) as simulator,
            httpx.Client(
                base_url=simulator.url, headers={"Authorization": "Bearer demo-token"}
            ) as client,
        ):
            yield client


def send(client: httpx.Client, **body: Any) -> str:
    body = {"messaging_product": "whatsapp", "type": "text", "text": {"body": "hi"}, **body}
    response = client.post(f"/v23.0/{NUMBER_ID}/messages", json=body)
    assert response.status_code == 200, response.text
    wamid: str = response.json()["messages"][0]["id"]
    return wamid


def posts_of_one_send(settings: dict[str, Any] | None = None, **body: Any) -> list[bytes]:
    """The three webhook bodies (sent, delivered, read) of one send."""
    receiver = Receiver()
    with meta_with_receiver(receiver, **(settings or {})) as client:
        send(client, **body)
        wait_until(lambda: len(receiver.posts) == 3)
    return [raw for _, raw in receiver.posts]


def hello_template() -> dict[str, Any]:
    body = {"type": "body", "parameters": [{"type": "text", "text": "x"}]}
    return {"name": "hello", "language": {"code": "en"}, "components": [body]}


def test_a_template_to_a_phone_number_reports_sent_delivered_read_as_seed_002_shows() -> None:
    receiver = Receiver()
    user_id, parent_id = derive_bsuids(PERSON)
    with meta_with_receiver(receiver) as client:
        wamid = send(
            client,
            to=PERSON,
            type="template",
            template=hello_template(),
            biz_opaque_callback_data="batch-7",
        )
        wait_until(lambda: len(receiver.posts) == 3)
    webhooks = [json.loads(body) for _, body in receiver.posts]
    for webhook in webhooks:
        assert webhook["object"] == "whatsapp_business_account"
        [entry] = webhook["entry"]
        assert entry["id"] == WABA_ID
        [change] = entry["changes"]
        assert change["field"] == "messages"
        value = change["value"]
        assert value["messaging_product"] == "whatsapp"
        assert value["metadata"] == {
            "display_phone_number": "4790000000",
            "phone_number_id": NUMBER_ID,
        }
        # Seed 000: contacts[] on sent, delivered and read.
        [contact] = value["contacts"]
        assert (contact["wa_id"], contact["user_id"], contact["parent_user_id"]) == (
            PERSON[1:],
            user_id,
            parent_id,
        )
    statuses = receiver.statuses()
    assert [s["status"] for s in statuses] == ["sent", "delivered", "read"]
    for status in statuses:
        assert status["id"] == wamid
        assert status["timestamp"].isdigit()
        assert abs(int(status["timestamp"]) - time.time()) < 60
        assert status["recipient_id"] == PERSON[1:]
        assert status["recipient_user_id"] == user_id
        assert status["parent_recipient_user_id"] == parent_id
        assert status["biz_opaque_callback_data"] == "batch-7"
    for status in statuses[:2]:
        assert status["pricing"] == {
            "billable": True,
            "pricing_model": "PMP",
            "type": "regular",
            "category": "marketing",
        }
        assert status["conversation"]["origin"] == {"type": "marketing"}
        assert int(status["conversation"]["expiration_timestamp"]) > time.time()
    assert "pricing" not in statuses[2] and "conversation" not in statuses[2]


def test_every_webhook_is_signed_with_the_app_secret_over_the_raw_body() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        send(client, to=PERSON)
        wait_until(lambda: len(receiver.posts) == 3)
    for signature, body in receiver.posts:
        expected = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
        assert signature == f"sha256={expected}"


def test_a_send_to_a_bsuid_reports_bsuid_only_statuses() -> None:
    for body in posts_of_one_send(recipient=BSUID):
        value = json.loads(body)["entry"][0]["changes"][0]["value"]
        [status], [contact] = value["statuses"], value["contacts"]
        assert "recipient_id" not in status and "wa_id" not in contact
        assert status["recipient_user_id"] == contact["user_id"] == BSUID
        assert status["parent_recipient_user_id"].startswith("NO.ENT.")


def test_a_free_form_message_is_priced_as_service_and_not_billed() -> None:
    sent = _status(json.loads(posts_of_one_send(to=PERSON)[0]))
    assert sent["pricing"] == {
        "billable": False,
        "pricing_model": "PMP",
        "type": "free_customer_service",
        "category": "service",
    }


def test_without_parent_bsuids_no_parent_fields_appear() -> None:
    for body in posts_of_one_send({"meta_parent_bsuids": False}, to=PERSON):
        assert b"parent_" not in body


@pytest.mark.parametrize(
    ("settings", "code"),
    [
        ({"scripted": {PERSON: [131026]}}, 131026),
        ({"failure_rate": 1.0, "seed": 1}, None),
        ({"open_care_windows": []}, 131047),
        ({"failure_rate": 1.0, "failure_codes": [131048]}, 131048),
    ],
    ids=["scripted", "failure-rate", "outside-care-window", "failure-codes"],
)
def test_a_failed_message_reports_errors_and_no_contacts_or_pricing(
    settings: dict[str, Any], code: int | None
) -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver, **settings) as client:
        wamid = send(client, to=PERSON, biz_opaque_callback_data="b")
        wait_until(lambda: len(receiver.posts) == 1)
        time.sleep(0.05)  # nothing follows a failure
    assert len(receiver.posts) == 1
    value = json.loads(receiver.posts[0][1])["entry"][0]["changes"][0]["value"]
    assert "contacts" not in value
    [status] = value["statuses"]
    assert (status["id"], status["status"], status["biz_opaque_callback_data"]) == (
        wamid,
        "failed",
        "b",
    )
    assert "pricing" not in status and "conversation" not in status
    [error] = status["errors"]
    assert set(error) >= {"code", "title", "message", "error_data"}
    assert isinstance(error["code"], int) and error["error_data"]["details"]
    if code is not None:
        assert error["code"] == code


def test_a_message_naming_media_never_uploaded_fails_with_131053() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver) as client:
        send(client, to=PERSON, type="image", image={"id": "1234567890123456"})
        wait_until(lambda: len(receiver.posts) == 1)
    assert receiver.statuses()[0]["errors"][0]["code"] == 131053


def test_a_receiver_failing_at_first_still_gets_every_status_in_order() -> None:
    receiver = Receiver(answers=[500, 403, 200, 400])  # Meta retries any answer but 200
    with meta_with_receiver(receiver) as client:
        send(client, to=PERSON)
        wait_until(lambda: len(receiver.posts) == 3)
        counts = client.get("/_simulator/stats").json()["callbacks"]
        taken = client.get("/_simulator/callbacks").json()
    assert [s["status"] for s in receiver.statuses()] == ["sent", "delivered", "read"]
    assert counts["retried"] == 3 and counts["delivered"] == 3
    assert [json.loads(body) for body in taken] == [json.loads(b) for _, b in receiver.posts]


def test_without_a_webhook_url_nothing_is_posted() -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver, meta_webhook_url=None) as client:
        send(client, to=PERSON)
        time.sleep(0.1)
        counts = client.get("/_simulator/stats").json()["callbacks"]
    assert receiver.posts == [] and counts["scheduled"] == 0


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"drop_rate": 1.0}, httpx.RemoteProtocolError),
        ({"hang_rate": 1.0, "hang_ms": 2000}, httpx.ReadTimeout),
    ],
    ids=["dropped", "hung"],
)
def test_a_send_answered_late_or_never_was_still_taken_and_is_reported(
    settings: dict[str, Any], error: type[Exception]
) -> None:
    receiver = Receiver()
    with meta_with_receiver(receiver, **settings) as client:
        body = {"messaging_product": "whatsapp", "to": PERSON, "text": {"body": "hi"}}
        with pytest.raises(error):
            client.post(f"/v23.0/{NUMBER_ID}/messages", json=body, timeout=0.5)
        wait_until(lambda: len(receiver.posts) == 3)
        stats = client.get("/_simulator/stats").json()
    assert stats["accepted_messages"] == 1
    assert sum(stats["faults"].values()) == 1
