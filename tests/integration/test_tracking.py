from __future__ import annotations

import json

import pytest
from sqlalchemy import select, update

from dispatcher import tracking
from dispatcher.db import (
    Batch,
    Database,
    DeliveryReport,
    Identity,
    Media,
    Message,
    Suppression,
)
from dispatcher.link.models import MessageResponse
from dispatcher.sending import _record
from dispatcher.status import MessageStatus
from tests.integration.conftest import make_batch


def dlr(message_id: str, code: int, ref_id: str = "r", **extra: object) -> bytes:
    body = {
        "messageId": message_id,
        "refId": ref_id,
        "messageType": "MediaTemplateMessage",
        "messageIndex": 0,
        "timestamp": "2026-03-03T12:34:51Z",
        "resultCode": code,
        "resultDescription": extra.pop("description", "ok"),
        "customParameters": extra.pop("custom", {}),
    }
    return json.dumps(body).encode()


def receive(db: Database, body: bytes) -> str:
    with db.session() as session:
        report_id = tracking.store(session, "dlr", body)
    with db.session() as session:
        states = [tracking.apply_dlr(session, report_id, d) for d in tracking.parse_dlrs(body)]
    return states[0]


def message(db: Database, destination: str) -> Message:
    with db.session() as session:
        found = session.scalar(select(Message).where(Message.destination == destination))
        assert found is not None
        return found


def test_a_late_sent_never_overwrites_delivered_but_fills_its_time(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    assert receive(db, dlr("m1", 112003)) == "applied"
    assert receive(db, dlr("m1", 112006)) == "applied"
    found = message(db, "+4791234567")
    assert found.status == MessageStatus.DELIVERED
    assert found.sent_at is not None and found.delivered_at is not None


def test_a_failure_stores_the_whatsapp_error_code(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    receive(
        db,
        dlr("m1", 112403, description="(#131049) not delivered", custom={"metaErrorDetails": "x"}),
    )
    found = message(db, "+4791234567")
    assert (found.status, found.result_code, found.whatsapp_error_code) == (
        "failed",
        112403,
        131049,
    )


def test_a_report_that_outruns_its_message_id_is_applied_once_the_id_is_recorded(
    db: Database,
) -> None:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"])
    assert receive(db, dlr("m2", 112006, ref_id=batch_id)) == "unmatched"
    _record(db, batch_id, MessageResponse(result_code=112001, message_ids=["m1", "m2"]))
    assert message(db, "+4791234567").status == MessageStatus.SUBMITTED
    assert message(db, "+4791234568").status == MessageStatus.SENT
    with db.session() as session:
        states = session.scalars(select(DeliveryReport.state)).all()
    assert states == ["applied"]


def test_a_failed_request_report_fails_every_message_of_the_batch(db: Database) -> None:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    body = json.dumps(
        {
            "refId": batch_id,
            "messageType": "request",
            "messageIndex": -1,
            "resultCode": 112000,
            "resultDescription": "Unknown error",
        }
    ).encode()
    receive(db, body)
    assert {message(db, d).status for d in ("+4791234567", "+4791234568")} == {"failed"}


def test_bsuids_in_a_report_are_learned_into_the_identity_book(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    custom = {
        "destination": "+4791234567",
        "whatsappUserId": "NO.13491208655302741918",
        "whatsappParentUserId": "NO.ENT.11815799212886844830",
    }
    receive(db, dlr("m1", 112006, custom=custom))
    with db.session() as session:
        keys = dict(session.execute(select(Identity.identifier, Identity.person_key)).all())
    assert set(keys) == set(custom.values())
    assert len(set(keys.values())) == 1


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"messageId": "x"}', b"\xff\xfe"])
def test_an_unreadable_body_is_rejected_with_a_reason(body: bytes) -> None:
    with pytest.raises(tracking.InvalidReport, match=r"."):
        tracking.parse_dlrs(body)


def test_an_opt_out_keyword_suppresses_every_identifier_of_the_sender(db: Database) -> None:
    body = json.dumps(
        {
            "destination": "+4790000000",
            "source": "+4791234567",
            "content": {"type": "WHATSAPP", "message": {"contentType": "TEXT", "text": " stop "}},
            "customParameters": {"whatsappUserId": "NO.1349120865530274191"},
        }
    ).encode()
    with db.session() as session:
        report_id = tracking.store(session, "mo", body)
        assert tracking.apply_incoming(session, report_id, tracking.parse_incoming(body))
    with db.session() as session:
        suppressed = set(session.scalars(select(Suppression.identifier)))
    assert suppressed == {"+4791234567", "NO.1349120865530274191"}


def test_an_in_doubt_batch_is_settled_by_any_identifier_the_report_carries(db: Database) -> None:
    batch_id = make_batch(db, ["NO.13491208655302741918"])
    with db.session() as session:
        session.execute(update(Batch).values(state="in_doubt"))
    custom = {"destination": "+4791234567", "whatsappUserId": "NO.13491208655302741918"}
    assert receive(db, dlr("m9", 112003, ref_id=batch_id, custom=custom)) == "applied"
    found = message(db, "NO.13491208655302741918")
    assert (found.status, found.link_message_id) == ("delivered", "m9")


def test_reports_that_never_match_do_not_starve_newer_ones_in_the_sweep(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    with db.session() as session:
        for number in range(5):
            tracking.store(session, "dlr", dlr(f"stranger-{number}", 112006))
    with db.session() as session:
        assert tracking.sweep(session, older_than_seconds=0, limit=5) == 0
        tracking.store(session, "dlr", dlr("m1", 112003))
    with db.session() as session:
        assert tracking.sweep(session, older_than_seconds=0, limit=5) == 1
    assert message(db, "+4791234567").status == MessageStatus.DELIVERED


def test_a_media_upload_error_drops_the_cached_media_id_so_it_is_uploaded_again(
    db: Database,
) -> None:
    batch_id = make_batch(db, ["+4791234567"], link_ids=["m1"])
    image = {"type": "image", "image": {"id": "media-7"}}
    payload = {
        "messages": [
            {"type": "template", "template": {"components": [{"parameters": [image]}]}}
        ]
    }
    with db.session() as session:
        session.execute(update(Batch).where(Batch.id == batch_id).values(payload=payload))
        session.add(
            Media(sha256="ab" * 32, source="+4790000000", content_type="image/png", size=1,
                  media_id="media-7")
        )  # fmt: skip
    receive(db, dlr("m1", 112403, description="(#131053) Media upload error"))
    with db.session() as session:
        assert session.scalars(select(Media)).all() == []
