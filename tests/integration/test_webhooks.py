from __future__ import annotations

import base64
import json
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from dispatcher.db import Database, DeliveryReport, Message
from dispatcher.servers import ServerThread
from dispatcher.webhooks import create_app
from tests.integration.conftest import make_batch

TOKEN = "s3cret-token"
SENT = {
    "messageId": "m1",
    "refId": "r",
    "messageType": "text",
    "messageIndex": 0,
    "timestamp": "2026-03-03T12:34:51Z",
    "resultCode": 112006,
    "resultDescription": "sent",
}


@pytest.fixture()
def client(db: Database) -> Iterator[httpx.Client]:
    """The webhook app served over real HTTP on loopback."""
    with (
        ServerThread(create_app(db, token=TOKEN)) as server,
        httpx.Client(base_url=server.url, timeout=10) as http,
    ):
        yield http


def stored(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        return [(r.state, r.body.decode()) for r in session.scalars(select(DeliveryReport))]


def test_a_report_is_stored_raw_and_applied(client: httpx.Client, db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    body = json.dumps(SENT)
    response = client.post(f"/webhooks/link/dlr?token={TOKEN}", content=body)
    assert response.status_code == 200
    assert stored(db) == [("applied", body)]
    with db.session() as session:
        assert session.scalar(select(Message.status)) == "sent"


@pytest.mark.parametrize("body", ["not json", "[]", '{"messageId": "m1"}', '{"resultCode": "x"}'])
def test_a_body_it_cannot_read_is_stored_and_answered_400(
    client: httpx.Client, db: Database, body: str
) -> None:
    response = client.post("/webhooks/link/dlr", content=body, headers={"X-Webhook-Token": TOKEN})
    assert response.status_code == 400
    assert "error" in response.json()
    assert stored(db) == [("invalid", body)]


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Token": "wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"link:wrong").decode()},
    ],
)
def test_an_unauthenticated_caller_is_refused_and_nothing_is_stored(
    client: httpx.Client, db: Database, headers: dict[str, str]
) -> None:
    response = client.post("/webhooks/link/dlr", content=json.dumps(SENT), headers=headers)
    assert response.status_code == 401
    assert stored(db) == []


def test_basic_auth_with_the_token_as_password_is_accepted(
    client: httpx.Client, db: Database
) -> None:
    auth = "Basic " + base64.b64encode(f"link:{TOKEN}".encode()).decode()
    response = client.post(
        "/webhooks/link/dlr", content=json.dumps(SENT), headers={"Authorization": auth}
    )
    assert response.status_code == 200
    assert stored(db)[0][0] == "unmatched"  # no message has id m1 in this test


def test_health_and_campaign_status(client: httpx.Client, db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    assert client.get("/healthz").json() == {"status": "ok"}
    with db.session() as session:
        campaign_id = session.scalar(select(Message.campaign_id))
    status = client.get(f"/campaigns/{campaign_id}").json()
    assert (status["state"], status["messages"], status["submitted"]) == ("sending", 1, 0)
    assert client.get("/campaigns/999999").status_code == 404
