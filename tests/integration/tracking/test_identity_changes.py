"""Identity events in webhooks reach the identity book through the applier's own path
(bodies stored as the receiver stores them, applied by ``tracking.apply_received``): a
changed number (seed 002) or BSUID (seed 000 ``user_changed_user_id``,
``user_id_update``) retires the old link and carries the opt-out to the person; a late
status report does not bring a retired link back; a requested contact share (Meta's
``origin`` contact_request, LINK's by the documented rule) links the sender's number to
their BSUID; usernames are stored with the identifiers. Every link keeps its source.
On SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from dispatcher.db import Database, Message
from dispatcher.db.models import DeliveryReport, Identity, RetiredIdentity, Suppression
from dispatcher.db.timestamps import aware
from dispatcher.tracking import apply as tracking
from tests.integration.conftest import incoming, make_batch, store_body
from tests.unit.providers.test_meta_callbacks import recorded

BUSINESS = "15550783881"  # the seeds' business display number
SENDER = "+4790000000"  # make_batch's campaign sender: a portfolio alone
OLD_NUMBER, NEW_NUMBER = "16505551234", "16505559999"
OLD_USER, NEW_USER = "US.13491208655302741918", "US.13491208655302741999"
OLD_PARENT, NEW_PARENT = "US.ENT.11815799212886844830", "US.ENT.11815799212886844899"
WAMID = "wamid.HBgLMTY1MDM4Nzk0MzkVAgASGBQzQUFERjg0NDEzNDdFODU3MUMxMAA="
CHANGED = 1750030073  # when the change happened


def meta(value: dict[str, Any], field: str = "messages") -> bytes:
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": BUSINESS, "phone_number_id": "106540352242922"},
        **value,
    }
    change = {"value": value, "field": field}
    return orjson.dumps(
        {"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [change]}]}
    )


def delivered(at: int, *, number: str = OLD_NUMBER, username: str | None = None) -> bytes:
    """Seed 000's delivered status of a message sent to ``number``, at ``at``."""
    body = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    value = body["entry"][0]["changes"][0]["value"]
    value["statuses"][0].update(timestamp=str(at), recipient_id=number)
    value["contacts"][0]["wa_id"] = number
    if username is None:
        del value["contacts"][0]["profile"]["username"]
    else:
        value["contacts"][0]["profile"]["username"] = username
    return orjson.dumps(body)


def written(text: str, at: int) -> bytes:
    """A text from the user (seed 000: ``from`` and ``from_user_id``)."""
    message = {"from": OLD_NUMBER, "from_user_id": OLD_USER, "id": f"wamid.in{at}",
               "timestamp": str(at), "type": "text", "text": {"body": text}}  # fmt: skip
    return meta({"contacts": [{"profile": {"name": "Pablo"}, "wa_id": OLD_NUMBER,
                               "user_id": OLD_USER}], "messages": [message]})  # fmt: skip


def changed_number() -> bytes:
    """Seed 002 ``user_changed_number``, with seed 000's ``from_user_id``."""
    message = {
        "from": OLD_NUMBER,
        "from_user_id": OLD_USER,
        "id": "wamid.system1",
        "system": {
            "body": f"Pablo changed from {OLD_NUMBER} to {NEW_NUMBER}",
            "new_wa_id": NEW_NUMBER,
            "type": "user_changed_number",
        },
        "timestamp": str(CHANGED),
        "type": "system",
    }
    return meta({"messages": [message]})


def changed_user_id() -> bytes:
    """Seed 000 ``user_changed_user_id``: the number stays, the old BSUID is named in the
    body only."""
    message = {
        "from": OLD_NUMBER,
        "id": "wamid.system2",
        "timestamp": str(CHANGED),
        "type": "system",
        "system": {
            "body": f"User Pablo changed from {OLD_USER} to {NEW_USER}",
            "wa_id": OLD_NUMBER,
            "user_id": NEW_USER,
            "type": "user_changed_user_id",
        },
    }
    return meta({"messages": [message]})


def user_id_update() -> bytes:
    """Seed 000 ``user_id_update``."""
    update = {
        "wa_id": OLD_NUMBER,
        "detail": "User id for Pablo has been updated.",
        "user_id": {"previous": OLD_USER, "current": NEW_USER},
        "parent_user_id": {"previous": OLD_PARENT, "current": NEW_PARENT},
        "timestamp": str(CHANGED),
    }
    return meta(
        {"contacts": [{"profile": {"name": "Pablo"}, "wa_id": OLD_NUMBER}],
         "user_id_update": [update]},
        field="user_id_update",
    )  # fmt: skip


def applied(db: Database, kind: str, body: bytes) -> int:
    """Store a body as the receiver does and apply it as the worker does; its id."""
    with db.session() as session:
        report_id = store_body(session, kind, body)
    with db.session() as session:
        tracking.apply_received(session, after_id=report_id - 1)
    return report_id


def state(db: Database, report_id: int) -> str:
    with db.session() as session:
        found = session.scalar(select(DeliveryReport.state).where(DeliveryReport.id == report_id))
        return str(found)


def links(db: Database) -> dict[str, Identity]:
    with db.session() as session:
        rows = session.scalars(select(Identity)).all()
        session.expunge_all()
        return {row.identifier: row for row in rows}


def retired(db: Database) -> list[tuple[str, str]]:
    with db.session() as session:
        return [
            (r.identifier, r.retired_by)
            for r in session.scalars(select(RetiredIdentity).order_by(RetiredIdentity.id))
        ]


def suppressed(db: Database) -> set[str]:
    with db.session() as session:
        return set(session.scalars(select(Suppression.identifier)))


def sent_to_old_number(db: Database) -> int:
    """A campaign message to the old number that WhatsApp reports on (``WAMID``)."""
    make_batch(db, [f"+{OLD_NUMBER}"], link_ids=[WAMID])
    with db.session() as session:
        return int(session.scalars(select(Message.id)).one())


def test_a_status_report_links_with_its_message_time_and_the_senders_portfolio(
    db: Database,
) -> None:
    message_id = sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000))
    book = links(db)
    assert set(book) == {f"+{OLD_NUMBER}", OLD_USER, OLD_PARENT}
    bsuid = book[OLD_USER]
    assert (bsuid.learned_from, bsuid.source, bsuid.portfolio) == (
        "dlr", f"message {message_id}", SENDER)  # fmt: skip
    assert aware(bsuid.learned_at) == datetime.fromtimestamp(CHANGED - 1000, UTC)
    assert book[f"+{OLD_NUMBER}"].portfolio == ""


def test_an_opt_out_follows_the_person_to_a_new_number_and_a_late_report_does_not_relink(
    db: Database,
) -> None:
    sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000))
    applied(db, "meta", written("STOP", CHANGED - 500))
    assert links(db)[OLD_USER].source.startswith("message ")  # learned first from the status
    assert {f"+{OLD_NUMBER}", OLD_USER} <= suppressed(db)

    change = applied(db, "meta", changed_number())

    assert state(db, change) == "applied"
    book = links(db)
    assert f"+{OLD_NUMBER}" not in book
    new = book[f"+{NEW_NUMBER}"]
    assert (new.person_key, new.learned_from, new.source, new.portfolio) == (
        book[OLD_USER].person_key, "system", f"report {change}", "")  # fmt: skip
    assert retired(db) == [(f"+{OLD_NUMBER}", f"user_changed_number (report {change})")]
    opted = suppressed(db)
    assert f"+{NEW_NUMBER}" in opted and OLD_USER in opted
    assert f"+{OLD_NUMBER}" not in opted  # the number's next owner does not inherit it

    # A delivered status from before the change, naming the old number with the BSUID:
    late = applied(db, "meta", delivered(CHANGED - 10))
    assert state(db, late) == "applied"
    assert f"+{OLD_NUMBER}" not in links(db)
    # The same change delivered again changes nothing.
    again = applied(db, "meta", changed_number())
    assert state(db, again) == "applied"
    assert len(retired(db)) == 1


def test_a_changed_user_id_retires_the_bsuid_named_in_its_body(db: Database) -> None:
    sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000))
    change = applied(db, "meta", changed_user_id())
    assert state(db, change) == "applied"
    book = links(db)
    assert OLD_USER not in book
    assert book[NEW_USER].person_key == book[f"+{OLD_NUMBER}"].person_key
    assert (book[NEW_USER].learned_from, book[NEW_USER].portfolio) == ("system", f"+{BUSINESS}")
    assert [identifier for identifier, _ in retired(db)] == [OLD_USER]


def test_a_user_id_update_retires_the_previous_bsuids(db: Database) -> None:
    sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000))
    update = applied(db, "meta", user_id_update())
    assert state(db, update) == "applied"
    book = links(db)
    assert OLD_USER not in book and OLD_PARENT not in book
    person = book[f"+{OLD_NUMBER}"].person_key
    for identifier in (NEW_USER, NEW_PARENT):
        row = book[identifier]
        assert (row.person_key, row.learned_from, row.source) == (
            person, "user_id_update", f"report {update}")  # fmt: skip
    assert sorted(identifier for identifier, _ in retired(db)) == sorted([OLD_PARENT, OLD_USER])


def test_a_change_naming_nobody_the_dispatcher_can_read_is_ignored(db: Database) -> None:
    body = orjson.loads(user_id_update())
    update = body["entry"][0]["changes"][0]["value"]["user_id_update"][0]
    update.update(wa_id=None, user_id={}, parent_user_id={})
    report_id = applied(db, "meta", orjson.dumps(body))
    assert state(db, report_id) == "ignored"
    assert links(db) == {}


def test_a_username_is_stored_with_the_identifiers_its_contact_names(db: Database) -> None:
    sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000, username="@pablomorales"))
    book = links(db)
    assert {book[i].username for i in (f"+{OLD_NUMBER}", OLD_USER, OLD_PARENT)} == {"@pablomorales"}
    applied(db, "meta", delivered(CHANGED - 900, username="@pablo"))
    assert links(db)[OLD_USER].username == "@pablo"


def requested_share(origin: str) -> bytes:
    """Seed 000: a contacts message answering REQUEST_CONTACT_INFO, from a user known by
    BSUID only (``origin`` contact_request) or sharing some card (``other``)."""
    body = orjson.loads(recorded("000_incoming_message_bsuid_only"))
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = OLD_USER
    message = value["messages"][0]
    del message["text"]
    message.update(type="contacts", origin=origin,
                   contacts=[{"phones": [{"phone": "+1 (650) 555-1234"}]}])  # fmt: skip
    return orjson.dumps(body)


def test_a_requested_contact_share_links_the_number_to_the_bsuid(db: Database) -> None:
    applied(db, "meta", requested_share("other"))
    assert f"+{OLD_NUMBER}" not in links(db)  # someone else's card links nobody
    share = applied(db, "meta", requested_share("contact_request"))
    assert state(db, share) == "applied"
    book = links(db)
    number = book[f"+{OLD_NUMBER}"]
    assert number.person_key == book[OLD_USER].person_key
    assert (number.learned_from, number.source) == ("contacts", f"report {share}")
    assert book[OLD_USER].portfolio == f"+{BUSINESS}"


LINK_USER = "SE.13491208655302741918"


def test_a_link_contacts_message_from_a_bsuid_only_sender_links_its_one_phone(
    db: Database,
) -> None:
    """The rule for LINK (seed 004 REQUEST_CONTACT_INFO): a contacts message answering
    one of our messages, from a sender named by BSUID only, with exactly one phone on
    its cards, is their number."""
    phone = {"phone": "+46 70 123 45 67", "type": "CELL", "waId": "46701234567"}
    card = {
        "contentType": "CONTACTS",
        "contacts": [{"name": {"formattedName": "Me"}, "phones": [phone]}],
    }
    from_number = incoming(card)  # a sender whose number is known: the card is another's
    applied(db, "mo", orjson.dumps(from_number))
    assert "+46701234567" not in links(db)
    two = {**card, "contacts": [*card["contacts"], {"phones": [{"phone": "+46 70 999 99 99"}]}]}
    applied(db, "mo", orjson.dumps({**incoming(two), "source": LINK_USER}))
    assert "+46701234567" not in links(db)  # two numbers: whose is not known

    unasked = applied(db, "mo", orjson.dumps({**incoming(card), "source": LINK_USER}))
    assert "+46701234567" not in links(db)  # not an answer to us: perhaps a friend's card
    assert state(db, unasked) == "applied"

    answer = {**card, "context": {"id": "wamid.ASKED", "from": "4790000000"}}
    share = applied(db, "mo", orjson.dumps({**incoming(answer), "source": LINK_USER}))
    book = links(db)
    number = book["+46701234567"]
    assert number.person_key == book[LINK_USER].person_key
    assert (number.learned_from, number.source) == ("contacts", f"report {share}")
    assert book[LINK_USER].portfolio == SENDER  # LINK's MO ``destination``


def test_a_stop_applied_after_the_change_it_came_before_stays_with_the_person(
    db: Database,
) -> None:
    """The STOP was written before the number change, but the change was applied
    first (another delivery, or Meta retrying the STOP): the opt-out is the person's, on
    their current identifiers, never the old number's next owner's."""
    sent_to_old_number(db)
    applied(db, "meta", delivered(CHANGED - 1000))
    applied(db, "meta", changed_number())
    applied(db, "meta", written("STOP", CHANGED - 500))

    opted = suppressed(db)
    assert {f"+{NEW_NUMBER}", OLD_USER} <= opted
    assert f"+{OLD_NUMBER}" not in opted
    assert f"+{OLD_NUMBER}" not in links(db)
