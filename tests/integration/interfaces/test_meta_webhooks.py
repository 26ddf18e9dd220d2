"""Meta's webhooks at ``/webhooks/meta`` over real HTTP (uvicorn with the production
protocol): the hub handshake, signatures checked before anything is stored, every body
stored before its 200, and every example of seeds 000-003 (tests/data/webhooks/meta/)
applied through the applier to campaign messages, the identity book, care windows and
replies, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from dispatcher.audience import book
from dispatcher.db import Batch, Database, DeliveryReport, Message
from dispatcher.db.models import CareWindow, Reply, Suppression
from dispatcher.db.timestamps import aware
from dispatcher.interfaces.edge import COUNTERS
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import MetaKeys, WebhookApp, create_app
from dispatcher.providers import InvalidReport, StatusReport
from dispatcher.providers.meta.callbacks import read_webhook
from dispatcher.providers.meta.signature import sign
from dispatcher.resending.policy import RetryClass, retry_class
from dispatcher.settings import opt_out_keywords
from dispatcher.status import BatchState, MessageStatus
from dispatcher.tracking import apply as tracking
from tests.integration.conftest import AUTH, SENT, TOKEN, guarded, make_batch, store_body
from tests.integration.interfaces.test_recorded_webhooks import persons
from tests.unit.providers.test_meta_callbacks import RECORDED, filled, recorded

SECRET = "demo-secret"
VERIFY = "verify-me"
PATH = "/webhooks/meta"
BUSINESS = "+15550783881"  # the display number of the seeds' examples
OUR_WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="


@dataclass
class Meta:
    app: WebhookApp
    http: httpx.Client

    def post(self, body: bytes, signature: bytes | None = None) -> httpx.Response:
        headers = {"X-Hub-Signature-256": (signature or sign(SECRET.encode(), body)).decode()}
        return self.http.post(PATH, content=body, headers=headers)

    def unsigned(self, body: bytes) -> httpx.Response:
        return self.http.post(PATH, content=body)

    def stored(self, body: bytes) -> DeliveryReport:
        """Post signed, wait for the applier; the stored row."""
        response = self.post(body)
        assert response.status_code == 200, response.text
        assert self.app.state.ingest.wait_applied(timeout_seconds=20)
        with self.app.state.ingest.db.session() as session:
            row = session.get(DeliveryReport, int(response.headers["x-report-id"]))
            assert row is not None
            session.expunge(row)
            return row


@pytest.fixture()
def meta(db: Database) -> Iterator[Meta]:
    """The webhook app with Meta's keys (and LINK's token), under uvicorn with the
    public port's protocol, its applier on a thread."""
    app = create_app(
        db,
        token=TOKEN,
        opt_out_words=opt_out_keywords("Avbryt"),
        applier="thread",
        meta=MetaKeys(SECRET, VERIFY),
    )
    with (
        guarded(app) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20) as http,
    ):
        yield Meta(app, http)


def rows(db: Database) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(DeliveryReport)) or 0)


# -- the handshake ------------------------------------------------------------------------


def test_the_handshake_echoes_the_challenge_as_plain_text_for_our_verify_token(meta: Meta) -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"}
    response = meta.http.get(PATH, params=query)
    assert (response.status_code, response.text) == (200, "1158201444")
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "query",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "guess", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {},
    ],
)
def test_a_handshake_without_our_verify_token_is_refused(meta: Meta, query: dict[str, str]) -> None:
    before = COUNTERS.bad_verify_token
    response = meta.http.get(PATH, params=query)
    assert (response.status_code, COUNTERS.bad_verify_token - before) == (403, 1)


def test_without_a_verify_token_set_no_handshake_succeeds(db: Database) -> None:
    app = create_app(db, applier="thread", meta=MetaKeys(SECRET, None))
    query = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    with ServerThread(app) as server, httpx.Client(base_url=server.url) as http:
        assert http.get(PATH, params=query).status_code == 403


# -- signatures ----------------------------------------------------------------------------

BODY = recorded("002_status_failed")


def test_an_unsigned_post_is_refused_401_before_its_body_and_never_stored(
    meta: Meta, db: Database
) -> None:
    before = COUNTERS.unsigned
    response = meta.unsigned(BODY)
    assert response.status_code == 401
    assert (COUNTERS.unsigned - before, rows(db)) == (1, 0)


@pytest.mark.parametrize(
    "signature",
    [
        sign(b"another secret", BODY),
        sign(SECRET.encode(), BODY + b"\n"),  # signed for another body
        b"sha256=",
        b"nonsense",
    ],
)
def test_a_wrongly_signed_post_is_refused_403_and_never_stored(
    meta: Meta, db: Database, signature: bytes
) -> None:
    before = COUNTERS.bad_signature
    response = meta.post(BODY, signature)
    assert response.status_code == 403
    assert (COUNTERS.bad_signature - before, rows(db)) == (1, 0)


def test_the_bearer_token_of_links_paths_neither_opens_nor_closes_metas(
    meta: Meta, db: Database
) -> None:
    assert meta.http.post(PATH, content=BODY, headers=AUTH).status_code == 401
    response = meta.http.post(
        PATH, content=BODY, headers={"X-Hub-Signature-256": sign(SECRET.encode(), BODY).decode()}
    )
    assert response.status_code == 200  # no X-Webhook-Token needed
    assert meta.http.post("/webhooks/link/dlr", content=orjson.dumps(SENT)).status_code == 401
    assert rows(db) == 1


def test_a_signed_body_is_stored_byte_for_byte_before_its_200(meta: Meta, db: Database) -> None:
    response = meta.post(BODY)
    assert (response.status_code, response.content) == (200, b"")
    with db.session() as session:  # committed when answered: no waiting for the applier
        row = session.get(DeliveryReport, int(response.headers["x-report-id"]))
        assert row is not None
        assert (row.kind, row.body) == ("meta", BODY)


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"object": "page"}', recorded("000_calls_status")]
)
def test_a_signed_body_that_reads_as_nothing_is_stored_answered_200_and_counted(
    meta: Meta, body: bytes
) -> None:
    before = COUNTERS.unreadable
    row = meta.stored(body)
    assert (row.state, row.body) == ("invalid", body)
    assert row.error
    assert COUNTERS.unreadable - before == 1
    assert b'dispatcher_webhook_unreadable_total{kind="meta"}' in COUNTERS.stored_exposition()


def test_a_signed_body_over_the_size_limit_is_checked_whole_and_kept_truncated(
    meta: Meta,
) -> None:
    big = BODY[:-1] + b" " * (1024 * 1024) + BODY[-1:]
    row = meta.stored(big)
    assert row.state == "invalid" and len(row.body) == 1024 * 1024


# -- every recorded body, applied -------------------------------------------------------------

VARIANTS = [
    pytest.param(path.stem, variant, id=f"{path.stem}-{variant}")
    for path in RECORDED
    for variant in ("printed", "filled")
]


def body_of(name: str, variant: str) -> bytes:
    return recorded(name) if variant == "printed" else filled(recorded(name))


def sent_to(named: tuple[str | None, ...]) -> str:
    found = book.identifiers_in(named)
    return found[0] if found else "+4791234567"


@pytest.mark.parametrize(("name", "variant"), VARIANTS)
def test_a_recorded_body_is_stored_and_applied_to_the_messages_it_reports_on(
    meta: Meta, db: Database, name: str, variant: str
) -> None:
    body = body_of(name, variant)
    statuses: tuple[StatusReport, ...] = ()
    try:
        callback = read_webhook(body)
    except InvalidReport:
        expected_state = "invalid"
    else:
        statuses = tuple(callback.statuses)
        tracked = any(s.message_status for s in statuses)  # "<STATUS>" tracks nothing
        # an echo is kept when it names a person ("<WHATSAPP_USER_PHONE_NUMBER>" does not)
        kept = any(book.identifiers_in(e.named_identifiers) for e in callback.echoes)
        expected_state = "applied" if tracked or callback.incoming or kept else "ignored"
    for status in statuses:  # one submitted message each, sent to whom it names
        make_batch(db, [sent_to(status.named_identifiers)], link_ids=[status.message_id or ""])
    row = meta.stored(body)
    assert (row.kind, row.body, row.state) == ("meta", body, expected_state)
    with db.session() as session:
        for status in statuses:
            message = session.scalar(
                select(Message).where(Message.link_message_id == status.message_id)
            )
            assert message is not None
            assert message.status == (status.message_status or MessageStatus.SUBMITTED)
            assert message.whatsapp_error_code == status.whatsapp_error_code
            assert message.result_code is None


# -- what the bodies change ------------------------------------------------------------------


def with_status(name: str, **fields: object) -> bytes:
    body = orjson.loads(recorded(name))
    body["entry"][0]["changes"][0]["value"]["statuses"][0].update(fields)
    return orjson.dumps(body)


def message_of(db: Database, wamid: str) -> Message:
    with db.session() as session:
        found = session.scalar(select(Message).where(Message.link_message_id == wamid))
        assert found is not None
        session.expunge(found)
        return found


def test_statuses_move_a_message_only_forward_and_the_same_body_twice_is_harmless(
    meta: Meta, db: Database
) -> None:
    make_batch(db, ["+16505551234"], link_ids=[OUR_WAMID])
    delivered = recorded("000_status_delivered_phone_and_bsuid")
    read = with_status("000_status_delivered_phone_and_bsuid", status="read")
    sent = with_status(
        "000_status_delivered_phone_and_bsuid", status="sent", timestamp="1750030000"
    )
    assert meta.stored(read).state == "applied"
    assert meta.stored(delivered).state == "applied"
    assert meta.stored(sent).state == "applied"
    assert meta.stored(read).state == "applied"  # Meta retried it
    found = message_of(db, OUR_WAMID)
    assert found.status == MessageStatus.READ
    # A read implies it was sent and delivered: stamped at once, kept by the late ones.
    read_at = datetime.fromtimestamp(1750030073, UTC)
    assert [aware(t) for t in (found.sent_at, found.delivered_at, found.read_at)] == [read_at] * 3
    assert (found.pricing_model, found.pricing_category, found.pricing_billable) == (
        "PMP", "marketing", True)  # fmt: skip


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (131014, RetryClass.FINAL),  # seed 002's media download failure
        (130472, RetryClass.FINAL),  # seed 002's experiment
        (131000, RetryClass.TRANSIENT),
        (131049, RetryClass.ECOSYSTEM),
        (130429, RetryClass.RATE_LIMIT),
    ],
)
def test_a_failed_status_gives_its_message_the_whatsapp_code_the_retry_class_reads(
    db: Database, code: int, kind: RetryClass
) -> None:
    wamid = "wamid.HBgLMTIxMTU1NTc5NDcVAgARGBIyRkQxREUxRDJFQUJGMkQ3NDIA"
    make_batch(db, ["+15551234567"], link_ids=[wamid])
    body = orjson.loads(recorded("002_status_failed"))
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["errors"][0]["code"] = code
    with db.session() as session:
        store_body(session, "meta", orjson.dumps(body))
    with db.session() as session:
        tracking.apply_received(session)
        limited = tracking.rate_limited_senders(session)
    found = message_of(db, wamid)
    assert (found.status, found.whatsapp_error_code) == (MessageStatus.FAILED, code)
    assert found.result_description == (
        "Request for url https://URL.jpg failed with error: 404 (Not Found)"
    )
    assert retry_class(found.whatsapp_error_code, found.result_code) is kind
    # One message refused, at the campaign's level (none set: STANDARD's 80)
    refused = tracking.Refused(messages=1, level=80)
    assert limited == ({"+4790000000": refused} if kind is RetryClass.RATE_LIMIT else {})


def test_a_status_before_its_message_id_is_recorded_waits_and_applies_with_the_batch(
    meta: Meta, db: Database
) -> None:
    batch = make_batch(db, ["+16505551234"])  # sent, the answer not recorded yet
    body = with_status("000_status_delivered_phone_and_bsuid", biz_opaque_callback_data=batch)
    response = meta.post(body)
    assert response.status_code == 200, response.text
    ingest = meta.app.state.ingest
    assert not ingest.wait_applied(timeout_seconds=0.5)  # untried while in flight
    with db.session() as session:
        row = session.get(DeliveryReport, int(response.headers["x-report-id"]))
        assert row is not None
        assert (row.state, row.ref_id, row.link_message_id) == ("received", batch, OUR_WAMID)
        session.execute(
            Message.__table__.update().values(  # type: ignore[attr-defined]
                link_message_id=OUR_WAMID, status=MessageStatus.SUBMITTED
            )
        )
        session.execute(
            Batch.__table__.update().values(state=BatchState.SUBMITTED)  # type: ignore[attr-defined]
        )
    assert ingest.wait_applied(timeout_seconds=20)  # the applier's, once answered
    assert message_of(db, OUR_WAMID).status == MessageStatus.DELIVERED


def test_a_body_of_several_statuses_stays_unmatched_while_one_of_them_is(
    meta: Meta, db: Database
) -> None:
    make_batch(db, ["+16505551234"], link_ids=[OUR_WAMID])
    body = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    value = body["entry"][0]["changes"][0]["value"]
    value["statuses"].append({**value["statuses"][0], "id": "wamid.NOT_YET_RECORDED"})
    assert meta.stored(orjson.dumps(body)).state == "unmatched"
    assert message_of(db, OUR_WAMID).status == MessageStatus.DELIVERED


USER, PARENT = "US.13491208655302741918", "US.ENT.11815799212886844830"


@pytest.mark.parametrize(
    "drop", [(), ("recipient_user_id", "parent_recipient_user_id")], ids=["named", "in-contacts"]
)
def test_a_status_teaches_the_book_the_number_bsuid_and_parent_of_its_person(
    meta: Meta, db: Database, drop: tuple[str, ...]
) -> None:
    make_batch(db, ["+16505551234"], link_ids=[OUR_WAMID])
    body = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    for field in drop:  # a send to the number: the BSUIDs are in contacts[] only
        del body["entry"][0]["changes"][0]["value"]["statuses"][0][field]
    meta.stored(orjson.dumps(body))
    assert persons(db) == {frozenset({"+16505551234", USER, PARENT})}


def test_an_incoming_message_opens_the_care_window_with_the_business_and_learns_its_sender(
    meta: Meta, db: Database
) -> None:
    meta.stored(recorded("000_incoming_message_bsuid_only"))
    with db.session() as session:
        windows = set(session.execute(select(CareWindow.business, CareWindow.identifier)))
    assert windows == {(BUSINESS, USER), (BUSINESS, PARENT)}
    assert persons(db) == {frozenset({USER, PARENT})}


def test_a_reply_naming_our_message_counts_for_its_campaign_once(meta: Meta, db: Database) -> None:
    make_batch(db, ["+16315551234"], link_ids=[OUR_WAMID])
    meta.stored(recorded("000_status_delivered_phone_and_bsuid"))  # gives its wamid
    reply = orjson.loads(filled(recorded("002_button_message")))
    reply["entry"][0]["changes"][0]["value"]["messages"][0]["context"]["id"] = OUR_WAMID
    body = orjson.dumps(reply)
    assert meta.stored(body).state == "applied"
    assert meta.stored(body).state == "applied"  # Meta retried it
    with db.session() as session:
        replies = list(session.execute(select(Reply.kind, Reply.button, Reply.label)))
    assert replies == [("button", "No-Button-Payload", "No")]


def test_an_opt_out_word_suppresses_every_identifier_of_its_sender(
    meta: Meta, db: Database
) -> None:
    body = recorded("000_incoming_message_bsuid_only").replace(
        b"Does it come in another color?", b"Avbryt!"
    )
    meta.stored(body)
    with db.session() as session:
        assert set(session.scalars(select(Suppression.identifier))) == {USER, PARENT}


def test_an_echo_is_kept_but_opens_no_window_and_touches_no_message(
    meta: Meta, db: Database
) -> None:
    make_batch(db, ["+16505551234"], link_ids=[OUR_WAMID])  # the revoke's echo id is ours
    row = meta.stored(recorded("003_smb_message_echoes_revoke"))
    assert row.state == "applied"  # kept with its person (tracking/test_echoes.py)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(CareWindow)) == 0
    assert message_of(db, OUR_WAMID).status == MessageStatus.SUBMITTED


def test_a_status_names_the_message_of_a_send_left_in_doubt(meta: Meta, db: Database) -> None:
    """A send whose answer never came (in doubt, no wamid recorded) is found by the
    batch its status echoes (``biz_opaque_callback_data``) and the person it names:
    the message is known sent, and nobody sends it again."""
    batch = make_batch(db, ["+16505551234"])
    with db.session() as session:
        session.execute(
            Batch.__table__.update().values(state=BatchState.IN_DOUBT)  # type: ignore[attr-defined]
        )
    body = with_status("000_status_delivered_phone_and_bsuid", biz_opaque_callback_data=batch)
    assert meta.stored(body).state == "applied"
    found = message_of(db, OUR_WAMID)
    assert (found.destination, found.status) == ("+16505551234", MessageStatus.DELIVERED)
