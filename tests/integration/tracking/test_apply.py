from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from dispatcher.audience import book
from dispatcher.db import (
    Batch,
    Database,
    DeliveryReport,
    Identity,
    Media,
    Message,
    Suppression,
)
from dispatcher.operations.progress import progress
from dispatcher.providers.link.models import MessageResponse
from dispatcher.sending.batch import _record
from dispatcher.status import MessageStatus
from dispatcher.tracking import apply as tracking
from tests.integration.conftest import (
    dlr,
    make_batch,
    parse_dlrs,
    parse_incoming,
    receive,
    store_body,
)


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


@pytest.mark.parametrize(
    ("message_id", "destination"),
    [("unknown", "+4791234567"), ("m1", "+4791234568"), ("m1", None)],
    ids=["a message we never sent", "another destination than ours", "no destination"],
)
def test_a_report_teaches_the_book_only_about_a_message_we_sent_to_whom_we_sent_it(
    db: Database, message_id: str, destination: str | None
) -> None:
    # A forged or stray report must not link a stranger's BSUID to one of our people.
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    custom = {"whatsappUserId": "NO.13491208655302741918"}
    if destination is not None:
        custom["destination"] = destination
    receive(db, dlr(message_id, 112006, custom=custom))
    with db.session() as session:
        assert session.scalars(select(Identity.identifier)).all() == []


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"messageId": "x"}', b"\xff\xfe"])
def test_an_unreadable_body_is_rejected_with_a_reason(body: bytes) -> None:
    with pytest.raises(tracking.InvalidReport, match=r"."):
        parse_dlrs(body)


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
        report_id = store_body(session, "mo", body)
        assert tracking.apply_incoming(session, report_id, parse_incoming(body))
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
    with db.session() as session:  # accepted, though no answer gave it a submission time
        shown = progress(session, found.campaign_id)
    assert shown is not None and (shown.submitted, shown.sent, shown.delivered) == (1, 1, 1)


def test_reports_that_never_match_do_not_starve_newer_ones_in_the_sweep(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    with db.session() as session:
        for number in range(5):
            store_body(session, "dlr", dlr(f"stranger-{number}", 112006))
    with db.session() as session:
        assert tracking.sweep(session, older_than_seconds=0, limit=5) == 0
        store_body(session, "dlr", dlr("m1", 112003))
    with db.session() as session:
        assert tracking.sweep(session, older_than_seconds=0, limit=5) == 1
    assert message(db, "+4791234567").status == MessageStatus.DELIVERED


def test_a_media_upload_error_drops_the_cached_media_id_so_it_is_uploaded_again(
    db: Database,
) -> None:
    batch_id = make_batch(db, ["+4791234567"], link_ids=["m1"])
    image = {"type": "image", "image": {"id": "media-7"}}
    payload = {
        "messages": [{"type": "template", "template": {"components": [{"parameters": [image]}]}}]
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


# -- sets of reports ------------------------------------------------------------------------

S, D, R = (112006, "ok"), (112003, "ok"), (112007, "ok")
F = (112403, "(#131049) not delivered")


def apply_together(db: Database, codes: tuple[tuple[int, str], ...]) -> None:
    """Store the reports, then apply them as one set (as the applier does)."""
    bodies = [dlr("m1", code, description=text) for code, text in codes]
    with db.session() as session:
        ids = [store_body(session, "dlr", body) for body in bodies]
    parsed = [(i, parse_dlrs(body)[0]) for i, body in zip(ids, bodies, strict=True)]
    with db.session() as session:
        tracking.apply_dlrs(session, parsed)


@pytest.mark.parametrize(
    "codes",
    [*itertools.permutations((S, D, R)), (R, R, S, D, S), (D, S, D, R, R, S)],
    ids=lambda codes: "-".join(str(c[0])[-1] for c in codes),
)
def test_sent_delivered_read_in_one_set_in_any_order_end_read_with_every_time(
    db: Database, codes: tuple[tuple[int, str], ...]
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    apply_together(db, codes)
    found = message(db, "+4791234567")
    assert (found.status, found.result_code) == ("read", 112007)
    assert None not in (found.sent_at, found.delivered_at, found.read_at)


@pytest.mark.parametrize(
    "codes", [(S, F), (F, S), (F, S, F, S)], ids=lambda c: "-".join(str(x[0]) for x in c)
)
def test_sent_and_failed_in_one_set_in_any_order_end_failed(
    db: Database, codes: tuple[tuple[int, str], ...]
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    apply_together(db, codes)
    found = message(db, "+4791234567")
    assert (found.status, found.whatsapp_error_code) == ("failed", 131049)


@pytest.mark.parametrize("codes", [(D, F), (F, D)], ids=["delivered-first", "failed-first"])
def test_a_failure_never_overrules_a_delivery_it_arrives_with(
    db: Database, codes: tuple[tuple[int, str], ...]
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    apply_together(db, codes)
    assert message(db, "+4791234567").status == "delivered"


def test_good_news_of_the_attempt_before_a_resend_counts_and_its_failure_is_ignored(
    db: Database,
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m2"])
    with db.session() as session:
        session.execute(update(Message).values(previous_link_message_id="m1"))
    assert receive(db, dlr("m1", 112403, description="(#131026) undeliverable")) == "ignored"
    assert message(db, "+4791234567").status == MessageStatus.SUBMITTED
    assert receive(db, dlr("m1", 112003)) == "applied"
    assert message(db, "+4791234567").status == MessageStatus.DELIVERED


# -- the applier's walk and the sweep -------------------------------------------------------


def test_the_applier_walks_from_its_mark_and_leaves_tried_reports_to_the_sweep(
    db: Database,
) -> None:
    make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    with db.session() as session:
        first = store_body(session, "dlr", dlr("m1", 112003))
        tried = store_body(session, "dlr", dlr("m2", 112003))
        session.execute(
            update(DeliveryReport)
            .where(DeliveryReport.id == tried)
            .values(tried_at=datetime.now(UTC))
        )
    with db.session() as session:
        assert tracking.unapplied_from(session) == first - 1
        assert tracking.apply_received(session, after_id=first - 1, limit=10) == (tried, 2)
    with db.session() as session:
        assert tracking.apply_received(session, after_id=tried) == (None, 0)
        assert tracking.unapplied_from(session) == tried
    assert message(db, "+4791234567").status == MessageStatus.DELIVERED
    assert message(db, "+4791234568").status == MessageStatus.SUBMITTED
    with db.session() as session:
        assert tracking.sweep(session, older_than_seconds=0) == 1
    assert message(db, "+4791234568").status == MessageStatus.DELIVERED


def test_the_applier_applies_incoming_messages_too(db: Database) -> None:
    body = json.dumps(
        {"source": "+4791234567", "content": {"message": {"text": "Avbryt"}}}
    ).encode()
    with db.session() as session:
        report_id = store_body(session, "mo", body)
    with db.session() as session:
        tracking.apply_received(session, opt_out_words=frozenset({"avbryt", "stop"}))
    with db.session() as session:
        assert session.scalar(select(Suppression.identifier)) == "+4791234567"
        assert session.get(DeliveryReport, report_id).state == "applied"  # type: ignore[union-attr]


# -- the identity book at volume -------------------------------------------------------------

PERSON = ["+4791234567", "NO.13491208655302741918", "NO.ENT.11815799212886844830"]


def test_learning_what_the_book_already_holds_writes_nothing(db: Database) -> None:
    with db.session() as session:
        assert book.learn_many(session, [PERSON, PERSON[:2]], "dlr") == 1
    with db.session() as session:
        assert book.learn_many(session, [PERSON, PERSON[:2], PERSON[1:]], "dlr") == 0


def test_a_group_remembered_as_known_is_not_looked_up_again(db: Database) -> None:
    known = book.Known()
    with db.session() as session:
        book.learn_many(session, [PERSON], "dlr", known_groups=known)
    assert tuple(PERSON) not in known  # not before its transaction is committed
    known.commit()
    assert tuple(PERSON) in known


def test_a_group_linking_two_persons_merges_them(db: Database) -> None:
    with db.session() as session:
        book.learn_many(session, [PERSON[:2], ["+4799999999", PERSON[2]]], "dlr")
    with db.session() as session:
        book.learn_many(session, [PERSON[1:]], "mo")
    with db.session() as session:
        keys = dict(session.execute(select(Identity.identifier, Identity.person_key)).all())
    assert len(keys) == 4 and len(set(keys.values())) == 1


def test_a_failure_without_a_whatsapp_code_clears_the_code_of_the_attempt_before(
    db: Database,
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m2"])
    with db.session() as session:  # resent after (#131049): the old code is still there
        session.execute(update(Message).values(whatsapp_error_code=131049, result_code=112403))
    receive(db, dlr("m2", 112404, description="Invalid contact"))
    found = message(db, "+4791234567")
    assert (found.status, found.result_code, found.whatsapp_error_code) == ("failed", 112404, None)
    assert found.result_description == "Invalid contact"
