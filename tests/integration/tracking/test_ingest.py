"""Intake (judging a body), group commit (``Ingest``) and the bulk statements behind them."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import Table, select, update

from dispatcher.db import Database, DeliveryReport, Message
from dispatcher.db.bulk import among, insert_arrays, update_by_id
from dispatcher.errors import StorageError
from dispatcher.providers.link.models import IncomingMessage
from dispatcher.settings import Settings, opt_out_keywords
from dispatcher.tracking import incoming
from dispatcher.tracking.ingest import ApplierSettings, Ingest
from dispatcher.tracking.intake import MAX_BODY_BYTES, Kind, Received, ReportState, read_body
from tests.integration.conftest import make_batch

REPORT = {
    "messageId": "m1",
    "refId": "r1",
    "resultCode": 112003,
    "timestamp": "2026-03-03T12:34:51Z",
}
REPORTS: Table = DeliveryReport.__table__  # type: ignore[assignment]
MESSAGES: Table = Message.__table__  # type: ignore[assignment]
T = TypeVar("T")


# -- intake --------------------------------------------------------------------------------


def test_a_readable_report_is_kept_with_the_columns_it_is_looked_up_by() -> None:
    received = read_body(Kind.DLR, json.dumps(REPORT).encode())
    assert (received.state, received.link_message_id, received.ref_id, received.result_code) == (
        ReportState.RECEIVED,
        "m1",
        "r1",
        112003,
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "Invalid JSON"),
        (b"\xff\xfe{", "Invalid JSON"),
        (b"[]", "(body): Input should be an object"),
        (b"", "Invalid JSON"),
        (b'{"messageId": "m1"}', "resultCode: Field required"),
        (b'{"messageId": "m1", "resultCode": "x"}', "resultCode: Input should be a valid integer"),
        (b'{"messageId": "m1", "resultCode": 99999999999}', "not a 32-bit integer"),
        (b'{"messageId": 7, "resultCode": 112003}', "messageId: Input should be a valid string"),
        (b'{"refId": "r1", "resultCode": 112003}', "messageId: required"),
        (b'{"messageType": "request", "resultCode": 112000}', "refId: a failed request"),
        (b'{"messageId": "m1", "resultCode": 112003, "timestamp": "soon"}', "timestamp"),
        (json.dumps(REPORT | {"refId": "r" * 65}).encode(), "refId: longer than 64"),
        (json.dumps(REPORT | {"messageId": "m\n1"}).encode(), "messageId: holds control"),
    ],
)
def test_a_report_it_cannot_read_is_kept_invalid_with_the_reason(body: bytes, reason: str) -> None:
    received = read_body(Kind.DLR, body)
    assert received.state is ReportState.INVALID
    assert received.error is not None and reason in received.error
    assert received.body == body


def test_every_documented_result_code_is_readable_and_so_is_any_other() -> None:
    codes = [112000, 112002, 112003, 112006, 112007, 112008, 112403, 112404, 112406, 112408, 12409]
    codes += [112409, 112506, 112001, 112999, 7, -1]  # unlisted: read as failures
    states = {read_body(Kind.DLR, json.dumps(REPORT | {"resultCode": c}).encode()).state
              for c in codes}  # fmt: skip
    assert states == {ReportState.RECEIVED}


def test_a_truncated_body_is_kept_invalid_with_its_real_size() -> None:
    received = read_body(Kind.DLR, b"x" * MAX_BODY_BYTES, size=MAX_BODY_BYTES + 5)
    assert received.state is ReportState.INVALID
    assert received.error is not None and f"{MAX_BODY_BYTES + 5} bytes" in received.error


def test_an_incoming_message_needs_only_its_sender_to_be_readable() -> None:
    assert read_body(Kind.MO, b'{"source": "+4791234567"}').state is ReportState.RECEIVED
    assert read_body(Kind.MO, b'{"content": {}}').state is ReportState.INVALID


# -- opt-out words --------------------------------------------------------------------------

WORDS = opt_out_keywords("Avbryt, slutt ")


def mo(message: dict[str, Any]) -> IncomingMessage:
    return IncomingMessage(source="+4791234567", content={"type": "WHATSAPP", "message": message})


@pytest.mark.parametrize(
    ("message", "word"),
    [
        ({"contentType": "TEXT", "text": "STOP"}, "stop"),
        ({"contentType": "TEXT", "text": " Stop! "}, "stop"),
        ({"contentType": "TEXT", "text": "'stop'"}, "stop"),
        ({"contentType": "TEXT", "text": "AVBRYT"}, "avbryt"),
        ({"contentType": "TEXT", "text": "Slutt."}, "slutt"),
        ({"contentType": "BUTTON", "button": {"text": "Stop", "payload": "x"}}, "stop"),
        ({"contentType": "BUTTON", "button": {"text": "No more", "payload": "STOP"}}, "stop"),
        (
            {"interactive": {"type": "button_reply", "button_reply": {"id": "1", "title": "Stop"}}},
            "stop",
        ),
        (
            {"interactive": {"type": "list_reply", "list_reply": {"id": "9", "title": "avbryt"}}},
            "avbryt",
        ),
    ],
)
def test_an_opt_out_word_alone_is_recognised_as_text_or_reply(
    message: dict[str, Any], word: str
) -> None:
    assert incoming.opt_out_word(mo(message), WORDS) == word


@pytest.mark.parametrize(
    "message",
    [
        {"contentType": "TEXT", "text": "don't stop"},
        {"contentType": "TEXT", "text": "unsubscribe"},  # a default word, not in WORDS
        {"contentType": "TEXT", "text": 42},
        {"contentType": "MEDIA", "media": {"caption": "stop"}},
        {"contentType": "BUTTON", "button": "stop"},
    ],
)
def test_anything_else_is_not_an_opt_out(message: dict[str, Any]) -> None:
    assert incoming.opt_out_word(mo(message), WORDS) is None


def test_the_opt_out_setting_adds_words_to_stop() -> None:
    settings = Settings(opt_out_words="Avbryt,  Slutt nå ,")
    assert settings.opt_out_keywords == {"stop", "avbryt", "slutt nå"}
    assert "unsubscribe" in Settings().opt_out_keywords


# -- group commit ---------------------------------------------------------------------------


def serve(ingest: Ingest, work: Callable[[], Awaitable[T]]) -> T:
    """Run ``work`` on a fresh event loop, as a server would, then close the ingest there."""

    async def main() -> T:
        try:
            return await work()
        finally:
            await ingest.close()

    return asyncio.run(main())


def test_bodies_arriving_together_share_commits_and_each_is_stored_when_answered(
    db: Database,
) -> None:
    ingest = Ingest(db, applier="thread")
    bodies = [json.dumps(REPORT | {"messageId": f"m{n}"}).encode() for n in range(300)]

    async def post(body: bytes) -> tuple[int, bool]:
        report_id = await ingest.store(read_body(Kind.DLR, body))
        with db.session() as session:  # committed by the time it is answered
            return report_id, session.get(DeliveryReport, report_id) is not None

    async def post_all() -> list[tuple[int, bool]]:
        return list(await asyncio.gather(*(post(b) for b in bodies)))

    answers = serve(ingest, post_all)
    assert all(stored for _, stored in answers)
    ids = [report_id for report_id, _ in answers]
    assert len(set(ids)) == len(bodies)
    assert ingest.commits < len(bodies) / 3
    with db.session() as session:
        kept = dict(session.execute(select(DeliveryReport.id, DeliveryReport.body)).all())
    assert [kept[i] for i in ids] == bodies


def test_bodies_arriving_a_moment_apart_share_one_commit_on_postgresql(migrated_pg: str) -> None:
    db = Database(migrated_pg)
    ingest = Ingest(db, applier="thread")
    ingest.gather_seconds = 0.2  # the writer's wait for more after a group's first body
    bodies = [json.dumps(REPORT | {"messageId": f"m{n}"}).encode() for n in range(4)]

    async def post_apart() -> list[int]:
        stores = []
        for body in bodies:
            stores.append(asyncio.ensure_future(ingest.store(read_body(Kind.DLR, body))))
            await asyncio.sleep(0.01)
        return list(await asyncio.gather(*stores))

    try:
        ids = serve(ingest, post_apart)
        assert ingest.commits == 1
        with db.session() as session:
            kept = dict(session.execute(select(DeliveryReport.id, DeliveryReport.body)).all())
        assert [kept[i] for i in ids] == bodies
    finally:
        db.dispose()


@pytest.mark.parametrize(("connections", "waited"), [(3, False), (4, True)])
def test_the_gather_ends_once_every_callers_connection_holds_a_body(
    migrated_pg: str, connections: int, waited: bool
) -> None:
    """Three callers, each waiting for its answer, can send nothing more: their bodies
    are committed at once. A fourth connection open might: the gather runs out."""
    db = Database(migrated_pg)
    ingest = Ingest(db, applier="thread")
    ingest.gather_seconds = 1.0
    ingest.callers = lambda: connections
    bodies = [json.dumps(REPORT | {"messageId": f"m{n}"}).encode() for n in range(3)]

    async def post_apart() -> tuple[float, list[int]]:
        started = time.monotonic()
        stores = []
        for body in bodies:
            stores.append(asyncio.ensure_future(ingest.store(read_body(Kind.DLR, body))))
            await asyncio.sleep(0.01)
        ids = list(await asyncio.gather(*stores))
        return time.monotonic() - started, ids

    try:
        took, ids = serve(ingest, post_apart)
        assert ingest.commits == 1 and len(set(ids)) == 3
        assert (took >= 1.0) is waited, took
    finally:
        db.dispose()


def test_closing_ends_a_gather_at_once(migrated_pg: str) -> None:
    db = Database(migrated_pg)
    ingest = Ingest(db, applier="thread")
    ingest.counted_gather_seconds = 30.0
    ingest.callers = lambda: 10  # nine more callers might send: the writer would wait

    async def store_then_close() -> tuple[float, int]:
        started = time.monotonic()
        stored = asyncio.ensure_future(
            ingest.store(read_body(Kind.DLR, json.dumps(REPORT).encode()))
        )
        await asyncio.sleep(0.05)
        await ingest.close()
        return time.monotonic() - started, await stored

    try:
        took, report_id = asyncio.run(store_then_close())
        assert took < 5.0 and report_id > 0
    finally:
        db.dispose()


def test_a_row_the_database_refuses_costs_only_its_own_columns(migrated_pg: str) -> None:
    db = Database(migrated_pg)
    ingest = Ingest(db, applier="thread")
    good = read_body(Kind.DLR, json.dumps(REPORT).encode())
    bad = Received(Kind.DLR, b"{}", ReportState.RECEIVED, error="NUL \x00", ref_id="r1")

    async def post_both() -> list[int]:
        return list(await asyncio.gather(ingest.store(good), ingest.store(bad)))

    try:
        good_id, bad_id = serve(ingest, post_both)
        with db.session() as session:
            good_row = session.get(DeliveryReport, good_id)
            bad_row = session.get(DeliveryReport, bad_id)
            assert good_row is not None and good_row.state == "received"
            assert bad_row is not None
            assert (bad_row.state, bad_row.body, bad_row.ref_id) == ("invalid", b"{}", None)
    finally:
        db.dispose()


def test_an_unreachable_database_fails_the_store_with_a_storage_error() -> None:
    db = Database("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    ingest = Ingest(db, applier="thread")

    async def post() -> int:
        return await ingest.store(read_body(Kind.DLR, json.dumps(REPORT).encode()))

    with pytest.raises(StorageError):
        serve(ingest, post)
    db.dispose()


def test_settling_waits_until_the_applier_has_been_through_everything_stored(
    db: Database,
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    ingest = Ingest(db, applier="thread")

    async def post_and_settle() -> int:
        report_id = await ingest.store(read_body(Kind.DLR, json.dumps(REPORT).encode()))
        assert await asyncio.to_thread(ingest.wait_applied, 20)
        return report_id

    report_id = serve(ingest, post_and_settle)
    with db.session() as session:
        assert session.get(DeliveryReport, report_id).state == "applied"  # type: ignore[union-attr]
        assert session.scalar(select(Message.status)) == "delivered"


def test_a_body_a_guardrail_acts_on_is_applied_without_the_linger(db: Database) -> None:
    """A template reported paused pauses its campaign within a slice: the applier does
    not wait its linger for more bodies first (an ordinary report still does)."""
    make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    settings = ApplierSettings(linger_seconds=30.0, idle_seconds=30.0)
    ingest = Ingest(db, applier="thread", settings=settings)
    paused = REPORT | {"messageId": "m2", "resultCode": 112403,
                       "resultDescription": "(#132015) Template is paused"}  # fmt: skip

    def state(report_id: int) -> str:
        with db.session() as session:
            return str(session.scalar(select(DeliveryReport.state).where(
                DeliveryReport.id == report_id)))  # fmt: skip

    async def post_both() -> tuple[str, str]:
        ordinary = await ingest.store(read_body(Kind.DLR, json.dumps(REPORT).encode()))
        await asyncio.sleep(1.0)
        lingering = state(ordinary)
        urgent = await ingest.store(read_body(Kind.DLR, json.dumps(paused).encode()))
        for _ in range(100):
            if state(urgent) != "received":
                break
            await asyncio.sleep(0.02)
        return lingering, state(urgent)

    lingering, urgent = serve(ingest, post_both)
    assert lingering == "received"  # the linger holds an ordinary report
    assert urgent == "applied"


# -- the bulk statements ----------------------------------------------------------------------

AWKWARD = ["plain", "", "with\x1fseparator", "with\x1enull mark", None, "ünïcode"]


@pytest.mark.parametrize("values", [["a", "b"], AWKWARD, [None, None], []], ids=repr)
def test_insert_arrays_keeps_every_value_and_returns_ids_in_row_order(
    db: Database, values: list[str | None]
) -> None:
    at = datetime(2026, 5, 4, 12, 0, 0, 123456, tzinfo=UTC)
    rows = [
        {"kind": "dlr", "body": (v or "").encode() + b"\x00\xff", "state": "received",
         "error": v, "link_message_id": None, "ref_id": f"r{n}", "result_code": n,
         "received_at": at}
        for n, v in enumerate(values)
    ]  # fmt: skip
    with db.session() as session:
        ids = insert_arrays(session, REPORTS, rows, returning="id")
    with db.session() as session:
        found = {r.id: r for r in session.scalars(select(DeliveryReport))}
    assert [(found[i].error, found[i].body, found[i].result_code) for i in ids] == [
        (r["error"], r["body"], r["result_code"]) for r in rows
    ]
    assert all(found[i].received_at.replace(tzinfo=UTC) == at for i in ids)


def test_among_matches_every_value_even_awkward_ones(db: Database) -> None:
    rows = [
        {"kind": "dlr", "body": b"", "state": "received", "error": None,
         "link_message_id": v, "ref_id": None, "result_code": None,
         "received_at": datetime.now(UTC)}
        for v in AWKWARD if v
    ]  # fmt: skip
    with db.session() as session:
        insert_arrays(session, REPORTS, rows)
        wanted = [v for v in AWKWARD if v]
        found = session.scalars(
            select(DeliveryReport.link_message_id).where(
                among(session, DeliveryReport.link_message_id, wanted)
            )
        )
        assert sorted(found) == sorted(wanted)


def test_update_by_id_sets_exactly_the_columns_each_row_names(db: Database) -> None:
    make_batch(db, ["+4791234567", "+4791234568"], link_ids=["m1", "m2"])
    with db.session() as session:
        first, second = sorted(session.scalars(select(Message.id)))
        session.execute(update(Message).values(whatsapp_error_code=131049))
    at = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    rows = [
        {"id": first, "status": "failed", "result_description": "with\x1fseparator",
         "whatsapp_error_code": None, "failed_at": at},
        {"id": second, "status": "sent"},
    ]  # fmt: skip
    with db.session() as session:
        update_by_id(session, MESSAGES, rows)
    with db.session() as session:
        found = {m.id: m for m in session.scalars(select(Message))}
    assert (found[first].status, found[first].result_description) == ("failed", "with\x1fseparator")
    assert found[first].whatsapp_error_code is None  # None sets NULL
    assert found[first].failed_at is not None
    assert found[first].failed_at.replace(tzinfo=UTC) == at
    assert (found[second].status, found[second].whatsapp_error_code, found[second].failed_at) == (
        "sent",
        131049,  # not named: kept
        None,
    )
