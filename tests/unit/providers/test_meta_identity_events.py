"""Meta's identity events read (``providers.meta.callbacks.read_webhook``): the seeds'
``user_changed_number`` (002), ``user_changed_user_id`` and ``user_id_update`` (000)
become provider-neutral ``IdentityChange`` records, and ``contacts[].profile.username``
(000) the usernames of the identifiers it names. A system message is nobody writing."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from dispatcher.providers import parse_callback
from dispatcher.providers.base import IdentityChange
from dispatcher.providers.meta.callbacks import parse_webhook, read_webhook
from tests.unit.providers.test_meta_callbacks import filled, recorded

BUSINESS = "15550783881"
OLD_NUMBER, NEW_NUMBER = "16505551234", "16505559999"
OLD_USER, NEW_USER = "US.13491208655302741918", "US.13491208655302741999"
OLD_PARENT, NEW_PARENT = "US.ENT.11815799212886844830", "US.ENT.11815799212886844899"
WHEN = 1750030073


def with_values(name: str, values: dict[str, str]) -> bytes:
    """A seed body with its placeholders filled in and named values put in them."""
    text = filled(recorded(name)).decode()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text.encode()


def changed_number() -> bytes:
    body = orjson.loads(
        with_values(
            "002_user_changed_number",
            {
                '"display_phone_number": "PHONE_NUMBER"': f'"display_phone_number": "{BUSINESS}"',
                '"from": "PHONE_NUMBER"': f'"from": "{OLD_NUMBER}"',
                "NEW_PHONE_NUMBER": NEW_NUMBER,
                "TIMESTAMP": str(WHEN),
            },
        )
    )
    # seed 000: every messages webhook names the BSUID (``from_user_id``)
    body["entry"][0]["changes"][0]["value"]["messages"][0]["from_user_id"] = OLD_USER
    return orjson.dumps(body)


def changed_user_id(**message: str) -> bytes:
    body = orjson.loads(
        with_values(
            "000_system_user_changed_user_id",
            {
                "<BUSINESS_DISPLAY_PHONE_NUMBER>": BUSINESS,
                "<WHATSAPP_USER_PHONE_NUMBER>": OLD_NUMBER,
                "<NEW_WHATSAPP_USER_ID>": NEW_NUMBER,
                "<NEW_BSUID>": NEW_USER,
                "<NEW_PARENT_BSUID>": NEW_PARENT,
                "<SYSTEM_CHANGE_TYPE>": "user_changed_user_id",
                "<WEBHOOK_TRIGGER_TIMESTAMP>": str(WHEN),
                "User...": f"User Pablo changed from {OLD_USER} to {NEW_USER}",
            },
        )
    )
    body["entry"][0]["changes"][0]["value"]["messages"][0].update(message)
    return orjson.dumps(body)


def user_id_update() -> bytes:
    return with_values(
        "000_user_id_update",
        {
            "<BUSINESS_DISPLAY_PHONE_NUMBER>": BUSINESS,
            "<WHATSAPP_USER_ID>": OLD_NUMBER,
            "<OLD_BSUID>": OLD_USER,
            "<NEW_BSUID>": NEW_USER,
            "<OLD_PARENT_BSUID>": OLD_PARENT,
            "<NEW_PARENT_BSUID>": NEW_PARENT,
            "<WEBHOOK_SENT_TIMESTAMP>": str(WHEN),
        },
    )


AT = datetime.fromtimestamp(WHEN, UTC)


def test_a_changed_number_retires_from_for_new_wa_id_and_keeps_the_bsuid() -> None:
    callback = read_webhook(changed_number())
    assert callback.changes == [
        IdentityChange(
            "user_changed_number", (OLD_NUMBER,), (NEW_NUMBER,), (OLD_USER,), AT, f"+{BUSINESS}"
        )
    ]
    assert (list(callback.incoming), list(callback.statuses)) == ([], [])


def test_a_changed_user_id_names_the_new_ids_and_retires_the_old_bsuid_and_number() -> None:
    (change,) = read_webhook(changed_user_id(from_user_id=OLD_USER)).changes
    assert change == IdentityChange(
        "user_changed_user_id",
        (OLD_USER, OLD_NUMBER),
        (NEW_NUMBER, NEW_USER, NEW_PARENT),
        (),
        AT,
        f"+{BUSINESS}",
    )


def test_a_changed_user_id_without_from_user_id_reads_the_old_bsuid_from_its_body() -> None:
    """Seed 000: body "User <NAME> changed from <OLD_BSUID> to <NEW_BSUID>"; a parent
    BSUID and a number named before and after are the same."""
    body = changed_user_id(from_parent_user_id=NEW_PARENT)
    raw = orjson.loads(body)
    raw["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = NEW_NUMBER
    (change,) = read_webhook(orjson.dumps(raw)).changes
    assert (change.old, change.new, change.same) == (
        (OLD_USER,),
        (NEW_USER,),
        (NEW_NUMBER, NEW_PARENT),
    )


def test_a_user_id_update_retires_the_previous_ids_for_the_current_ones() -> None:
    (change,) = read_webhook(user_id_update()).changes
    assert change == IdentityChange(
        "user_id_update",
        (OLD_USER, OLD_PARENT),
        (NEW_USER, NEW_PARENT),
        (OLD_NUMBER,),
        AT,
        f"+{BUSINESS}",
    )


def test_identity_changes_reach_the_provider_seam_and_parse_webhook_alike() -> None:
    for body in (changed_number(), changed_user_id(), user_id_update()):
        assert list(parse_callback("meta", body).changes) == list(parse_webhook(body).changes)
        assert parse_webhook(body).changes


def test_a_system_message_of_another_kind_changes_nobody() -> None:
    raw = orjson.loads(changed_number())
    raw["entry"][0]["changes"][0]["value"]["messages"][0]["system"]["type"] = "customer_identity"
    callback = read_webhook(orjson.dumps(raw))
    assert (list(callback.changes), list(callback.incoming)) == ([], [])


def test_a_username_in_contacts_is_read_with_the_identifiers_it_names() -> None:
    """Seed 000: a delivered status of a user with a username."""
    callback = read_webhook(recorded("000_status_delivered_phone_and_bsuid"))
    assert list(callback.usernames) == [
        (("16505551234", OLD_USER, OLD_PARENT), "@pablomorales"),
    ]
    # without a username (the user has none): nothing
    raw = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    del raw["entry"][0]["changes"][0]["value"]["contacts"][0]["profile"]["username"]
    assert list(read_webhook(orjson.dumps(raw)).usernames) == []


def test_a_username_of_a_bsuid_only_incoming_message_is_read() -> None:
    callback = read_webhook(recorded("000_incoming_message_bsuid_only"))
    assert [name for _, name in callback.usernames] == ["@realsheenanelson"]


def test_a_requested_contact_share_says_it_is_the_senders_own_number() -> None:
    body = orjson.loads(filled(recorded("000_contacts_message_requested_contact_info")))
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = OLD_USER
    message = value["messages"][0]
    message["origin"] = "contact_request"
    message["contacts"][0]["phones"][0]["phone"] = "+1 (650) 555-1234"
    (requested,) = read_webhook(orjson.dumps(body)).incoming
    assert requested.shares_own_number
    message["origin"] = "other"
    (other,) = read_webhook(orjson.dumps(body)).incoming
    assert not other.shares_own_number
