"""The webhook receiver through real HTTP (uvicorn on loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import itertools
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from dispatcher.db import (
    Batch,
    Database,
    DeliveryReport,
    Identity,
    Message,
    Suppression,
    migrate,
)
from dispatcher.db.models import CareWindow
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.web.app import create_internal_app
from dispatcher.interfaces.webhooks import create_app
from dispatcher.providers.link.models import MessageResponse
from dispatcher.sending.batch import _record
from dispatcher.status import BatchState, MessageStatus
from dispatcher.tracking.intake import MAX_BODY_BYTES
from tests.integration.conftest import (
    AUTH,
    SENT,
    TOKEN,
    Receiver,
    incoming,
    key_headers,
    make_batch,
)


def stored(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        rows = session.scalars(select(DeliveryReport).order_by(DeliveryReport.id))
        return [(r.state, r.body.decode(errors="replace")) for r in rows]


def message(db: Database) -> Message:
    with db.session() as session:
        found = session.scalar(select(Message))
        assert found is not None
        return found


def report(code: int, *, description: str = "ok", **extra: Any) -> dict[str, Any]:
    return SENT | {"resultCode": code, "resultDescription": description} | extra


def test_a_report_is_stored_raw_then_applied(receiver: Receiver, db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    body = json.dumps(SENT)
    response = receiver.http.post(f"/webhooks/link/dlr?token={TOKEN}", content=body)
    assert response.status_code == 200
    with db.session() as session:
        row = session.get(DeliveryReport, int(response.headers["x-report-id"]))
        assert row is not None and row.body == body.encode()  # committed before the 200
    receiver.wait_applied()
    assert stored(db) == [("applied", body)]
    assert message(db).status == "sent"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe{", "JSON"),
        ('{"messageId": "m1"}', "resultCode"),
        ('{"messageId": "m1", "resultCode": 99999999999}', "not a 32-bit integer"),
    ],
    ids=["not-json", "no-result-code", "result-code-out-of-range"],
)  # every reason is in test_ingest.py
def test_a_body_it_cannot_read_is_stored_and_answered_400_and_serving_goes_on(
    receiver: Receiver, db: Database, body: str | bytes, reason: str
) -> None:
    response = receiver.dlr(body)
    assert response.status_code == 400
    assert reason in response.json()["error"]
    raw = body if isinstance(body, bytes) else body.encode()
    with db.session() as session:
        row = session.get(DeliveryReport, response.json()["stored"])
        assert row is not None
        assert (row.state, row.body) == ("invalid", raw)
        assert row.error and reason in row.error
    assert receiver.dlr(SENT).status_code == 200


def test_a_body_over_the_limit_is_stored_truncated_and_answered_400(
    receiver: Receiver, db: Database
) -> None:
    huge = b'{"messageId": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = receiver.dlr(huge)
    assert response.status_code == 400
    assert f"{len(huge)} bytes" in response.json()["error"]
    with db.session() as session:
        row = session.get(DeliveryReport, response.json()["stored"])
        assert row is not None
        assert (row.state, row.body) == ("invalid", huge[:MAX_BODY_BYTES])
    assert receiver.dlr(SENT).status_code == 200  # the same connection still serves


def test_an_incoming_message_without_a_sender_is_stored_and_answered_400(
    receiver: Receiver, db: Database
) -> None:
    response = receiver.mo({"destination": "+4790000000", "content": {}})
    assert response.status_code == 400
    assert "source" in response.json()["error"]
    assert stored(db)[0][0] == "invalid"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Webhook-Token": "wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"link:wrong").decode()},
    ],
)
def test_an_unauthenticated_caller_is_refused_and_nothing_is_stored(
    receiver: Receiver, db: Database, headers: dict[str, str]
) -> None:
    response = receiver.http.post("/webhooks/link/dlr", content=json.dumps(SENT), headers=headers)
    assert response.status_code == 401
    assert stored(db) == []


def test_basic_auth_with_the_token_as_password_is_accepted(
    receiver: Receiver, db: Database
) -> None:
    auth = "Basic " + base64.b64encode(f"link:{TOKEN}".encode()).decode()
    response = receiver.http.post(
        "/webhooks/link/dlr", content=json.dumps(SENT), headers={"Authorization": auth}
    )
    assert response.status_code == 200
    receiver.wait_applied()
    assert stored(db)[0][0] == "unmatched"  # no message has id m1 in this test


def test_the_group_commit_knows_how_many_connections_its_callers_hold(
    receiver: Receiver, request: pytest.FixtureRequest
) -> None:
    """Under the guarded protocol the writer ends its gather once every connection on
    the port holds a body waiting; under uvicorn's own it always waits its gather."""
    url = f"/webhooks/link/dlr?token={TOKEN}"
    assert receiver.http.post(url, content=json.dumps(SENT)).status_code == 200
    callers = receiver.app.receiver.ingest.callers
    if request.node.callspec.params["receiver"] != "direct":
        assert callers is None
        return
    assert callers is not None and callers() == 1
    base = str(receiver.http.base_url)
    with (
        httpx.Client(base_url=base, timeout=20) as second,
        httpx.Client(base_url=base, timeout=20) as stranger,
        httpx.Client(base_url=base, timeout=20) as checker,
    ):
        assert second.post(url, content=json.dumps(SENT)).status_code == 200
        assert stranger.post("/webhooks/link/dlr", content=json.dumps(SENT)).status_code == 401
        assert checker.get("/healthz").status_code == 200
        assert callers() == 2  # neither the stranger's nor the health check's counts
    deadline = time.monotonic() + 5
    while callers() != 1 and time.monotonic() < deadline:  # the server sees it close
        time.sleep(0.01)
    assert callers() == 1


def test_the_token_in_the_query_is_checked_on_every_call_not_only_the_first(
    receiver: Receiver, db: Database
) -> None:
    """The query string that carried the token is remembered whole; any other is read."""
    body = json.dumps(SENT)
    answers = [
        receiver.http.post(f"/webhooks/link/dlr?{query}", content=body).status_code
        for query in (
            f"token={TOKEN}",
            f"token={TOKEN}",  # the remembered one
            f"token={TOKEN[:-1]}",  # one character short
            f"token={TOKEN[:-1]}x",  # as long, one character off
            f"token=x&token={TOKEN}",  # the first one counts
            f"campaign=7&token={TOKEN}",  # another URL with the token
            f"token={TOKEN}",  # the first URL after another was remembered
        )
    ]
    assert answers == [200, 200, 401, 401, 401, 200, 200]
    assert len(stored(db)) == 4


def test_a_webhook_path_answers_405_to_anything_but_post(receiver: Receiver) -> None:
    assert receiver.http.get("/webhooks/link/dlr").status_code == 405


def test_health_and_campaign_status(receiver: Receiver, db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    assert receiver.http.get("/healthz").json() == {"status": "ok"}
    with db.session() as session:
        campaign_id = session.scalar(select(Message.campaign_id))
    # Campaign status is the internal listener's, never the public one's.
    assert receiver.http.get(f"/campaigns/{campaign_id}").status_code == 404
    with (
        ServerThread(create_internal_app(db)) as internal,
        httpx.Client(base_url=internal.url, timeout=20, headers=key_headers(db)) as http,
    ):
        status = http.get(f"/campaigns/{campaign_id}").json()
        assert (status["state"], status["messages"], status["submitted"]) == ("sending", 1, 0)
        assert http.get("/campaigns/999999").status_code == 404


def test_a_database_that_cannot_take_the_body_gets_503_so_link_retries(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    app = create_app(db, token=TOKEN, applier="thread")
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=20) as http,
    ):
        response = http.post("/webhooks/link/dlr", content=json.dumps(SENT), headers=AUTH)
    db.dispose()
    assert response.status_code == 503


# -- order and repetition ---------------------------------------------------------------

S, D, R = report(112006), report(112003), report(112007)
F = report(112403, description="(#131049) not delivered")
# Every order, and repetitions; each report is applied before the next arrives (the
# worst case for order). The same reports arriving together in one set are folded by
# tracking.apply_dlrs: test_tracking.py covers those.
_LIFECYCLE = [
    *itertools.permutations((S, D, R)),
    (S, D, R, S),
    (R, D, S, R),
    (D, R, S, D),
    (S, S, D, D, R, R),
]
_FAILING = [(S, F), (F, S), (S, F, S), (F, S, F), (F, F, S, S)]


def _names(reports: tuple[dict[str, Any], ...]) -> str:
    return "-".join({112006: "sent", 112003: "delivered", 112007: "read"}.get(
        r["resultCode"], "failed") for r in reports)  # fmt: skip


@pytest.mark.parametrize("reports", _LIFECYCLE, ids=_names)
def test_sent_delivered_read_in_any_order_and_repeated_end_read_with_every_time(
    receiver: Receiver, db: Database, reports: tuple[dict[str, Any], ...]
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    for body in reports:
        assert receiver.dlr(body).status_code == 200
        receiver.wait_applied()
    found = message(db)
    assert (found.status, found.result_code) == ("read", 112007)
    assert None not in (found.sent_at, found.delivered_at, found.read_at)
    assert {state for state, _ in stored(db)} == {"applied"}


@pytest.mark.parametrize("reports", _FAILING, ids=_names)
def test_sent_and_failed_in_any_order_and_repeated_end_failed_with_the_whatsapp_code(
    receiver: Receiver, db: Database, reports: tuple[dict[str, Any], ...]
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    for body in reports:
        assert receiver.dlr(body).status_code == 200
        receiver.wait_applied()
    found = message(db)
    assert (found.status, found.result_code, found.whatsapp_error_code) == (
        "failed",
        112403,
        131049,
    )
    assert found.failed_at is not None


def test_a_report_that_outruns_its_message_id_waits_untried_until_the_answer_is_stored(
    receiver: Receiver, db: Database
) -> None:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"])  # its request in flight
    assert receiver.dlr(report(112003, messageId="m2", refId=batch_id)).status_code == 200
    # Not tried while the request is in flight: no 'unmatched' to write and read again.
    assert not receiver.app.state.ingest.wait_applied(timeout_seconds=0.5)
    assert stored(db)[0][0] == "received"
    _record(db, batch_id, MessageResponse(result_code=112001, message_ids=["m1", "m2"]))
    with db.session() as session:
        statuses = dict(session.execute(select(Message.destination, Message.status)).all())
    assert statuses == {"+4791234567": "submitted", "+4791234568": "delivered"}
    assert stored(db)[0][0] == "applied"
    receiver.wait_applied()  # the applier let it go


def test_the_applier_applies_a_waiting_report_itself_once_its_batch_is_answered(
    receiver: Receiver, db: Database
) -> None:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"])
    assert receiver.dlr(report(112003, messageId="m2", refId=batch_id)).status_code == 200
    assert not receiver.app.state.ingest.wait_applied(timeout_seconds=0.5)
    with db.session() as session:  # what a worker's record commits, in one transaction
        session.execute(
            update(Batch).where(Batch.id == batch_id).values(state=BatchState.SUBMITTED)
        )
        for link_id, destination in (("m1", "+4791234567"), ("m2", "+4791234568")):
            session.execute(
                update(Message)
                .where(Message.destination == destination)
                .values(link_message_id=link_id, status=MessageStatus.SUBMITTED)
            )
    receiver.wait_applied()
    with db.session() as session:
        statuses = dict(session.execute(select(Message.destination, Message.status)).all())
    assert statuses == {"+4791234567": "submitted", "+4791234568": "delivered"}
    assert stored(db)[0][0] == "applied"


# -- incoming messages --------------------------------------------------------------------


def suppressed(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Suppression.identifier)))


@pytest.mark.parametrize(
    "content",
    [
        {"contentType": "TEXT", "text": "  stop. "},
        {"contentType": "TEXT", "text": "avbryt"},  # configured (OPT_OUT_WORDS)
        {"contentType": "BUTTON", "button": {"text": "No more", "payload": "STOP"}},
    ],
    ids=["text", "configured-word", "button-payload"],
)  # every form of reply is in test_ingest.py
def test_an_opt_out_word_suppresses_every_identifier_of_the_sender(
    receiver: Receiver, db: Database, content: dict[str, Any]
) -> None:
    body = incoming(content, whatsappUserId="NO.13491208655302741918")
    assert receiver.mo(body).status_code == 200
    receiver.wait_applied()
    assert suppressed(db) == {"+4791234567", "NO.13491208655302741918"}
    assert stored(db)[0][0] == "applied"


@pytest.mark.parametrize(
    "content",
    [
        {"contentType": "TEXT", "text": "quit"},  # a default word, not configured here
        {"contentType": "MEDIA", "media": {"type": "image/jpg", "caption": "STOP"}},
    ],
    ids=["unconfigured-word", "media-caption"],
)
def test_other_messages_suppress_nobody_but_open_the_care_window(
    receiver: Receiver, db: Database, content: dict[str, Any]
) -> None:
    assert receiver.mo(incoming(content)).status_code == 200
    receiver.wait_applied()
    assert suppressed(db) == set()
    with db.session() as session:
        assert session.scalar(select(CareWindow.identifier)) == "+4791234567"


def test_an_incoming_message_teaches_the_book_who_the_sender_is(
    receiver: Receiver, db: Database
) -> None:
    body = incoming(
        {"contentType": "TEXT", "text": "hi"},
        whatsappUserId="SE.13491208655302741918",
        whatsappParentUserId="SE.ENT.11815799212886844830",
    )
    assert receiver.mo(body).status_code == 200
    receiver.wait_applied()
    with db.session() as session:
        book = dict(session.execute(select(Identity.identifier, Identity.person_key)).all())
    assert set(book) == {
        "+4791234567",
        "SE.13491208655302741918",
        "SE.ENT.11815799212886844830",
    }
    assert len(set(book.values())) == 1


def test_a_status_report_teaches_the_book_the_bsuids_of_its_destination(
    receiver: Receiver, db: Database
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    custom = {"destination": "+4791234567", "whatsappUserId": "NO.13491208655302741918"}
    for code in (112006, 112003):  # the second report names the same people: nothing new
        assert receiver.dlr(report(code, customParameters=custom)).status_code == 200
    receiver.wait_applied()
    with db.session() as session:
        book = dict(session.execute(select(Identity.identifier, Identity.person_key)).all())
    assert book == {"+4791234567": "+4791234567", "NO.13491208655302741918": "+4791234567"}


# -- as deployed ----------------------------------------------------------------------------


def test_the_applier_runs_as_its_own_process_on_postgresql(migrated_pg: str) -> None:
    db = Database(migrated_pg)
    make_batch(db, ["+4791234567"], link_ids=["m-process-1"])
    app = create_app(db, token=TOKEN)
    assert app.state.ingest.mode == "process"
    with (
        ServerThread(app) as server,
        httpx.Client(base_url=server.url, timeout=20) as http,
    ):
        body = json.dumps(report(112003, messageId="m-process-1"))
        assert http.post("/webhooks/link/dlr", content=body, headers=AUTH).status_code == 200
        assert app.state.ingest.wait_applied(timeout_seconds=30)
    with db.session() as session:
        status = session.scalar(
            select(Message.status).where(Message.link_message_id == "m-process-1")
        )
    db.dispose()
    assert status == "delivered"


def test_the_embedded_default_applies_on_a_thread(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'embedded.db'}"
    migrate(url)
    db = Database(url)
    assert create_app(db).state.ingest.mode == "thread"
    db.dispose()
