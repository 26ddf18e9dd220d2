"""Meta's echoes (seed 003: what the business sent people from the WhatsApp Business
app; seed 000 for ``to_user_id``) posted signed to the webhook app over real HTTP and
applied: one row an echo however often Meta posts it, found by the person it went to,
and nothing more: no care window, no reply, no campaign message changed. On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import orjson
import pytest
from sqlalchemy import func, select

from dispatcher.db import Database, Message, WhatsAppMessageId
from dispatcher.db.models import CareWindow, Reply, WhatsAppEcho
from dispatcher.db.timestamps import aware
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import MetaKeys, create_app
from dispatcher.providers import parse_callback
from dispatcher.status import MessageStatus
from tests.integration.conftest import make_batch
from tests.integration.interfaces.test_meta_webhooks import SECRET, Meta
from tests.integration.interfaces.test_recorded_webhooks import persons
from tests.unit.providers.test_meta_callbacks import filled, recorded

PERSON, BUSINESS = "+16505551234", "+15550783881"  # the seed's examples
USER, PARENT = "US.13491208655302741918", "US.ENT.11815799212886844830"
# The revoke echo's own id is, in the seed, the id of the message the status examples
# report on: here one of a campaign's.
OURS = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
EDITED = "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="


@pytest.fixture()
def meta(db: Database) -> Iterator[Meta]:
    """The webhook app with Meta's app secret, its applier on a thread."""
    app = create_app(db, applier="thread", meta=MetaKeys(SECRET, None))
    with ServerThread(app) as server, httpx.Client(base_url=server.url, timeout=20) as http:
        yield Meta(app, http)


COLUMNS = ("wa_message_id", "recipient", "recipient_user_id", "business_number", "kind",
           "original_message_id", "sent_at", "report_id")  # fmt: skip


def echoes(db: Database) -> list[tuple[object, ...]]:
    """Every echo row, oldest first, as (COLUMNS...)."""
    with db.session() as session:
        found = session.execute(
            select(*(WhatsAppEcho.__table__.c[c] for c in COLUMNS)).order_by(WhatsAppEcho.id)
        )
        return [(*row[:6], aware(row.sent_at), row.report_id) for row in found]


def at(unix: int) -> datetime:
    return datetime.fromtimestamp(unix, UTC)


TEXT = "wamid.HBgLMTY0NjcwNDM1OTUVAgARGBIyNDlBOEI5QUQ4NDc0N0FCNjMA"
EDIT = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQkJERjg0NDEzNDdFODU3MUMxMAA="


@pytest.mark.parametrize(
    ("name", "wamid", "kind", "original", "sent"),
    [
        ("003_smb_message_echoes_text", TEXT, "text", None, 1739321024),
        ("003_smb_message_echoes_revoke", OURS, "revoke", EDITED, 1749854575),
        ("003_smb_message_echoes_edit", EDIT, "edit", EDITED, 1749854620),
    ],
    ids=["text", "revoke", "edit"],
)
def test_a_recorded_echo_is_kept_once_with_its_person_even_when_meta_posts_it_twice(
    meta: Meta, db: Database, name: str, wamid: str, kind: str, original: str | None, sent: int
) -> None:
    body = recorded(name)
    first = meta.stored(body)
    again = meta.stored(body)  # Meta retried it
    assert (first.state, again.state) == ("applied", "applied")
    assert echoes(db) == [(wamid, PERSON, None, BUSINESS, kind, original, at(sent), first.id)]


def test_echoes_open_no_window_count_no_reply_and_leave_the_campaign_message_alone(
    meta: Meta, db: Database
) -> None:
    """The person got one of a campaign's messages (delivered: its wamid known, so a
    reply naming it would count); then the business, from the app, revoked a message
    whose id is that one and edited one, answering ours."""
    make_batch(db, [PERSON], link_ids=[OURS])
    assert meta.stored(recorded("000_status_delivered_phone_and_bsuid")).state == "applied"
    with db.session() as session:
        before = session.scalars(select(Message)).one()
        session.expunge(before)
    edit = orjson.loads(recorded("003_smb_message_echoes_edit"))
    edit["entry"][0]["changes"][0]["value"]["message_echoes"][0]["edit"]["message"]["context"] = {
        "id": OURS
    }
    for body in (recorded("003_smb_message_echoes_revoke"), orjson.dumps(edit)):
        assert meta.stored(body).state == "applied"
    assert len(echoes(db)) == 2
    with db.session() as session:
        after = session.scalars(select(Message)).one()
        assert session.scalar(select(func.count()).select_from(CareWindow)) == 0
        assert session.scalar(select(func.count()).select_from(Reply)) == 0
        assert list(session.scalars(select(WhatsAppMessageId.wa_message_id))) == [OURS]
    assert (after.status, after.updated_at, after.link_message_id, after.wa_message_id) == (
        MessageStatus.DELIVERED,
        before.updated_at,
        OURS,
        OURS,
    )


def seed_000_echo(*, to: bool = True) -> bytes:
    """Seed 000's echo to a person with a BSUID (``to_user_id``, ``to_parent_user_id``),
    its placeholders given values; ``to=False``: their number withheld (usernames)."""
    body = filled(recorded("000_smb_message_echoes"))
    for placeholder, value in {
        b"<BUSINESS_DISPLAY_PHONE_NUMBER>": b"15550783881",
        b"<WHATSAPP_USER_PHONE_NUMBER>": b"16505551234",
        b"<PARENT_BSUID>": PARENT.encode(),
        b"<BSUID>": USER.encode(),
        b"<WHATSAPP_MESSAGE_ID>": b"wamid.ECHO1",
        b"<WEBHOOK_TRIGGER_TIMESTAMP>": b"1750000000",
        b"<MESSAGE_TYPE>": b"image",
    }.items():
        body = body.replace(placeholder, value)
    if not to:
        data = orjson.loads(body)
        del data["entry"][0]["changes"][0]["value"]["message_echoes"][0]["to"]
        del data["entry"][0]["changes"][0]["value"]["contacts"][0]["wa_id"]
        body = orjson.dumps(data)
    return body


@pytest.mark.parametrize(
    ("to", "recipient", "person"),
    [(True, PERSON, {PERSON, USER, PARENT}), (False, USER, {USER, PARENT})],
    ids=["number-and-bsuid", "bsuid-only"],
)
def test_an_echo_to_a_person_with_a_bsuid_keeps_it_and_the_book_learns_them_as_one(
    meta: Meta, db: Database, to: bool, recipient: str, person: set[str]
) -> None:
    row = meta.stored(seed_000_echo(to=to))
    assert row.state == "applied"
    assert echoes(db) == [
        ("wamid.ECHO1", recipient, USER, BUSINESS, "image", None, at(1750000000), row.id)
    ]
    assert persons(db) == {frozenset(person)}
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(CareWindow)) == 0


@pytest.mark.parametrize("name", ["003_smb_message_echoes_syntax", "000_smb_message_echoes"])
def test_an_echo_that_names_nobody_is_stored_raw_and_ignored(
    meta: Meta, db: Database, name: str
) -> None:
    """The seeds' syntax examples, placeholders as values: no person, no row."""
    body = filled(recorded(name))
    (echo,) = parse_callback("meta", body).echoes
    assert echo.type == "<MESSAGE_TYPE>"
    row = meta.stored(body)
    assert (row.state, row.body) == ("ignored", body)
    assert echoes(db) == []


def test_a_body_with_statuses_and_an_echo_applies_both(meta: Meta, db: Database) -> None:
    make_batch(db, [PERSON], link_ids=[OURS])
    body = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    echo = orjson.loads(recorded("003_smb_message_echoes_text"))
    body["entry"].append(echo["entry"][0])
    assert meta.stored(orjson.dumps(body)).state == "applied"
    with db.session() as session:
        assert session.scalars(select(Message.status)).one() == MessageStatus.DELIVERED
    assert [e[0] for e in echoes(db)] == [TEXT]
