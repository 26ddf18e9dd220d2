"""What LINK's reports and incoming messages tell about a campaign, end to end: the
simulator over real HTTP, its reports posted to the webhook app, the database.

Seed 004: a request's ``customParameters`` come back in its DLRs, which add
``waMessageId`` and the pricing fields (DLR Example#1); an incoming message's
``context.id`` names the ``waMessageId`` of the message it answers ('Incoming Messages').
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from rich.console import Console
from sqlalchemy import select, update

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.db import Database, Message, Reply, WhatsAppMessageId
from dispatcher.interfaces.console import summary
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import create_app as create_webhooks
from dispatcher.operations import progress
from dispatcher.operations.reports import ROW_COLUMNS
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from dispatcher.sending.throttle import Throttle
from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.tracking import apply as tracking
from tests.integration.conftest import dlr, make_batch, parse_incoming, receive, store_body

TOKEN = "t0ken"
PEOPLE = ["+4741234501", "+4741234502", "+4741234503"]
SPEC = """
name: Replies rehearsal
sender: {source: "+4790000000", level: STANDARD}
message:
  type: template
  template:
    name: offer
    language: en
    components:
      - {type: body, parameters: [{type: text, text: "{name}"}]}
      - {type: button, subType: quickReply, index: 0, parameters: [{type: payload, payload: "YES"}]}
recipients: people.csv
batch_size: 2
log_message_content: true
"""

# The template as LINK's List Templates gives it (Meta's format).
OFFER = {
    "name": "offer",
    "language": "en",
    "status": "APPROVED",
    "category": "UTILITY",
    "components": [
        {"type": "BODY", "text": "Hi {{1}}, our offer is on."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Yes please"}]},
    ],
}


class Stack:
    """Simulator and webhook app on loopback; a campaign sent through them."""

    def __init__(self, db: Database, redis_url: str, folder: Path) -> None:
        self.db = db
        self.webhooks = ServerThread(create_webhooks(db, token=TOKEN, redis_url=redis_url)).start()
        gate = f"{self.webhooks.url}/webhooks/link/dlr?token={TOKEN}"
        config = SimulatorConfig(
            username="u", password="pw", gates={"g": gate}, dlr_delay_ms=1, read_rate=0.0,
            record_requests=True, templates=[OFFER],
        )  # fmt: skip
        self.simulator = ServerThread(create_app(config)).start()
        credentials = LinkCredentials(
            base_url=self.simulator.url, username="u", password="pw", platform_id="P",
            platform_partner_id="1",
        )  # fmt: skip
        self.client = LinkClient(credentials, timeout_seconds=5)
        self.redis = redis.Redis.from_url(redis_url)
        ctx = SendContext(db, self.client, Throttle(self.redis), event_report_gate="g")
        (folder / "campaign.yaml").write_text(SPEC)
        rows = "".join(f"{phone},P{n}\n" for n, phone in enumerate(PEOPLE))
        (folder / "people.csv").write_text("phone,name\n" + rows)
        self.campaign_id = create_campaign(db, preflight(folder).loaded)
        self.batch_ids = prepare_campaign(db, self.client, self.campaign_id, reports_dir=folder)
        outcomes = [send_batch(ctx, b, f"t-{b}") for b in self.batch_ids]
        assert outcomes == [Outcome.SUBMITTED] * len(self.batch_ids)

    def close(self) -> None:
        self.client.close()
        self.redis.close()
        self.simulator.stop()
        self.webhooks.stop()

    def simulator_json(self, path: str) -> list[Any]:
        found: list[Any] = httpx.get(f"{self.simulator.url}/_simulator/{path}").json()
        return found

    def reports(self) -> list[dict[str, Any]]:
        """Every DLR the webhook app took (answered 2xx), as the simulator sent it."""
        return [json.loads(body) for body in self.simulator_json("callbacks")]

    def post_incoming(self, body: dict[str, Any]) -> None:
        answer = httpx.post(
            f"{self.webhooks.url}/webhooks/link/mo?token={TOKEN}", content=json.dumps(body)
        )
        assert answer.status_code == 200, answer.text


@pytest.fixture()
def stack(db: Database, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    made = Stack(db, redis_url, tmp_path)
    yield made
    made.close()


def wait_for(condition: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def delivered(db: Database) -> Callable[[], bool]:
    def check() -> bool:
        with db.session() as session:
            statuses = session.scalars(select(Message.status)).all()
        return len(statuses) == len(PEOPLE) and set(statuses) == {"delivered"}

    return check


def wa_ids(db: Database) -> dict[str, str | None]:
    with db.session() as session:
        rows = session.execute(select(Message.destination, Message.wa_message_id)).all()
    return dict(rows)  # type: ignore[arg-type]


def test_every_request_names_its_campaign_and_batch_and_its_reports_echo_them(
    stack: Stack,
) -> None:
    requests = stack.simulator_json("requests")
    assert sorted(r["refId"] for r in requests) == sorted(stack.batch_ids)
    for request in requests:
        assert request["customParameters"] == {
            "campaignId": str(stack.campaign_id),
            "batchId": request["refId"],
            "ott.whatsapp.logMessageContent": "true",
        }
    wait_for(delivered(stack.db))
    reports = stack.reports()
    assert len(reports) == 2 * len(PEOPLE)  # sent and delivered
    for report in reports:
        custom = report["customParameters"]
        assert custom["campaignId"] == str(stack.campaign_id)
        assert custom["batchId"] == report["refId"]
        assert custom["ott.whatsapp.logMessageContent"] == "true"


def test_whatsapp_message_ids_and_pricing_reach_messages_status_and_report(
    stack: Stack,
) -> None:
    wait_for(delivered(stack.db))
    said = {r["customParameters"]["destination"]: r["customParameters"] for r in stack.reports()}
    assert wa_ids(stack.db) == {phone: said[phone]["waMessageId"] for phone in PEOPLE}
    with stack.db.session() as session:
        pricing = session.execute(
            select(Message.pricing_model, Message.pricing_category, Message.pricing_type,
                   Message.pricing_billable)
        ).all()  # fmt: skip
        known = session.scalar(select(WhatsAppMessageId.campaign_id).limit(1))
        shown = progress.progress(session, stack.campaign_id)
        rows = [dict(zip(ROW_COLUMNS, row, strict=True))
                for row in progress.outcomes(session, stack.campaign_id)]  # fmt: skip
    assert set(pricing) == {("PMP", "utility", "regular", True)}  # the template's category
    assert known == stack.campaign_id
    assert shown is not None
    assert (shown.billable, shown.not_billable) == ({"utility": 3}, {})
    assert [(r["destination"], r["whatsapp_message_id"], r["pricing_category"], r["billable"])
            for r in rows] == [(p, said[p]["waMessageId"], "utility", "true")
                               for p in PEOPLE]  # fmt: skip
    table = io.StringIO()
    Console(file=table, width=120).print(summary(shown))
    assert "billable: utility" in table.getvalue()


def incoming(source: str, message: dict[str, Any], message_id: str) -> dict[str, Any]:
    """An incoming message as seed 004 'Incoming Messages' shows it."""
    return {
        "destination": "+4790000000",
        "source": source,
        "content": {"type": "WHATSAPP", "message": message},
        "provider": "whatsapp",
        "timestamp": "2026-03-21T17:41:58Z",
        "messageId": message_id,
        "gateCustomParameters": {},
        "customParameters": None,
    }


def test_replies_naming_a_sent_message_count_for_its_campaign_by_button(stack: Stack) -> None:
    wait_for(delivered(stack.db))
    ids = wa_ids(stack.db)
    first, second, third = PEOPLE

    def context(phone: str) -> dict[str, str]:
        return {"source": "+4790000000", "id": str(ids[phone])}

    button = {"text": "Yes please", "payload": "YES"}
    quick_reply = incoming(
        first, {"contentType": "BUTTON", "context": context(first), "button": button}, "mo1"
    )
    stack.post_incoming(quick_reply)
    stack.post_incoming(quick_reply)  # delivered twice: counted once
    stack.post_incoming(incoming(second, {
        "contentType": "INTERACTIVE", "context": context(second),
        "interactive": {"type": "button_reply", "button_reply": {"id": "no", "title": "No thanks"}},
    }, "mo2"))  # fmt: skip
    stack.post_incoming(incoming(third, {"contentType": "TEXT", "text": "when?",
                                         "context": context(third)}, "mo3"))  # fmt: skip
    # Not replies to the campaign: no context, or a context naming another message.
    stack.post_incoming(incoming(third, {"contentType": "TEXT", "text": "hello"}, "mo4"))
    stack.post_incoming(incoming(third, {"contentType": "TEXT", "text": "hm",
                                         "context": {"id": "wamid.other"}}, "mo5"))  # fmt: skip

    def all_applied() -> bool:
        with stack.db.session() as session:
            return len(session.scalars(select(Reply.id)).all()) == 3

    wait_for(all_applied)
    time.sleep(0.3)  # a late duplicate or stray reply would show by now
    with stack.db.session() as session:
        shown = progress.progress(session, stack.campaign_id)
        rows = {row[2]: dict(zip(ROW_COLUMNS, row, strict=True))
                for row in progress.outcomes(session, stack.campaign_id)}  # fmt: skip
    assert shown is not None
    assert (shown.replies, shown.people_replied) == (3, 3)
    assert shown.reply_buttons == {"No thanks [no]": 1, "Yes please [YES]": 1}
    assert [(rows[p]["replies"], rows[p]["reply_buttons"]) for p in PEOPLE] == [
        (1, "Yes please [YES]"), (1, "No thanks [no]"), (1, None)
    ]  # fmt: skip
    table = io.StringIO()
    Console(file=table, width=120).print(summary(shown))
    text = table.getvalue()
    assert "replies" in text and "from 3 people" in text
    assert "chose Yes please [YES]" in text


def test_a_reply_to_the_attempt_before_a_resend_still_counts(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    receive(db, dlr("m1", 112006, custom={"waMessageId": "wamid.first"}))
    with db.session() as session:  # resent: a new messageId, the first one kept
        session.execute(update(Message).values(link_message_id="m2", previous_link_message_id="m1"))
    receive(db, dlr("m2", 112003, custom={"waMessageId": "wamid.second"}))
    assert wa_ids(db) == {"+4791234567": "wamid.second"}
    body = json.dumps(
        incoming("+4791234567", {"contentType": "TEXT", "text": "ok",
                                 "context": {"id": "wamid.first"}}, "mo1")
    ).encode()  # fmt: skip
    with db.session() as session:
        report_id = store_body(session, "mo", body)
        tracking.apply_incoming(session, report_id, parse_incoming(body))
    with db.session() as session:
        replied = session.execute(select(Reply.message_id, Reply.kind)).all()
        message_id = session.scalar(select(Message.id))
    assert replied == [(message_id, "text")]
