"""Meta's webhooks read (``providers.meta.callbacks``) and signed
(``providers.meta.signature``): every example body of seeds 000-003, as printed
(tests/data/webhooks/meta/), and the same bodies with their placeholders filled in."""

from __future__ import annotations

import re
import timeit
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from dispatcher.providers import InvalidReport, Pricing, ReplyContext, parse_callback
from dispatcher.providers.meta.callbacks import Webhook, parse_webhook, read_webhook
from dispatcher.providers.meta.signature import (
    Signature,
    challenge_answer,
    judge,
    sign,
    start,
    verify,
)
from dispatcher.status import MessageStatus
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "webhooks" / "meta"
RECORDED = sorted(DATA.glob("*.json"))


def recorded(name: str) -> bytes:
    return (DATA / f"{name}.json").read_bytes()


def filled(body: bytes) -> bytes:
    """A printed example as Meta would send it: its comments dropped, its bare
    placeholders (``PHONE_NUMBER``, ``<TIMESTAMP>``) quoted, the commas the seed
    misses or doubles mended, and its braces closed. Only what the print leaves out."""
    text = body.decode()
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"(?<=[\s,])//[^\n]*", " ", text)
    text = re.sub(r"# [^{\n]*\{ \.\.\. \}", " ", text)
    text = re.sub(r",\s*\.\.\.", " ", text)
    text = re.sub(r"\{\s*<[A-Z_]+>\s*\}", "{}", text)
    bare = r"(<[A-Z_?]+>|[A-Z][A-Z_]+|accept)(?=\s*[,}\]\n])"
    text = re.sub(r"(?<=[:\[,]\s)" + bare, r'"\1"', text)
    text = re.sub(r"(?<=[:\[,])" + bare, r'"\1"', text)
    text = re.sub(r'"(\w+)"\s+\{', r'"\1": {', text)
    text = re.sub(r'(["}\]])(\s+)(?=")', r"\1,\2", text)
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    return (text + "}" * max(text.count("{") - text.count("}"), 0)).encode()


def summary(body: bytes) -> str:
    """What the dispatcher makes of a body, in a few words."""
    try:
        read_webhook(body)
    except InvalidReport as exc:
        reason = str(exc)
        return "invalid: " + ("not JSON" if reason.startswith("not JSON") else reason)
    webhook = parse_webhook(body)
    kinds = ("statuses", "incoming", "contacts", "system_changes", "echoes", "user_id_updates")
    counts = [f"{kind}={len(getattr(webhook, kind))}" for kind in kinds if getattr(webhook, kind)]
    return " ".join(counts) or "nothing"


NOT_JSON = "invalid: not JSON"
NOT_CLOUD_API = "invalid: object: not 'whatsapp_business_account'"
INCOMING = "incoming=1 contacts=1"
STATUS = "statuses=1"


def unread(field: str) -> str:
    return f"invalid: field {field}: not one the dispatcher reads"


# (file, as printed, with its placeholders filled in)
READINGS = [
    ("000_business_username_update", NOT_JSON, unread("business_username_update")),
    ("000_call_permission_reply", NOT_JSON, INCOMING),
    ("000_calls_connect_business_initiated", NOT_JSON, unread("calls")),
    ("000_calls_connect_user_initiated", NOT_JSON, unread("calls")),
    ("000_calls_status", NOT_JSON, unread("calls")),
    ("000_calls_terminate_business_initiated", NOT_JSON, unread("calls")),
    ("000_calls_terminate_user_initiated", NOT_JSON, unread("calls")),
    ("000_contacts_message_requested_contact_info", NOT_JSON, INCOMING),
    ("000_edit_message", NOT_JSON, INCOMING),
    ("000_group_participants_update", NOT_JSON, unread("group_participants_update")),
    ("000_history_media", NOT_JSON, unread("history")),
    # an unterminated string ("<DEVICE_TIMESTAMP>,): not mended
    ("000_history_messages", NOT_JSON, NOT_JSON),
    ("000_incoming_message", NOT_JSON, INCOMING),
    ("000_incoming_message_bsuid_only", INCOMING, INCOMING),
    ("000_revoke_message", NOT_JSON, "contacts=1"),  # deletes a message: nothing written
    ("000_smb_app_state_sync", NOT_JSON, unread("smb_app_state_sync")),
    ("000_smb_message_echoes", NOT_JSON, "contacts=1 echoes=1"),
    ("000_status_delivered_bsuid_only", "statuses=1 contacts=1", "statuses=1 contacts=1"),
    ("000_status_delivered_phone_and_bsuid", "statuses=1 contacts=1", "statuses=1 contacts=1"),
    ("000_status_group_message", NOT_JSON, "statuses=1 contacts=1"),
    ("000_status_with_contacts", NOT_JSON, "statuses=1 contacts=1"),
    ("000_system_user_changed_user_id", NOT_JSON, "system_changes=1"),
    ("000_user_id_update", NOT_JSON, "contacts=1 user_id_updates=1"),
    ("000_user_preferences", NOT_JSON, unread("user_preferences")),
    ("001_contacts_message_example", INCOMING, INCOMING),
    ("001_contacts_message_syntax", NOT_JSON, INCOMING),
    ("002_button_message", NOT_JSON, INCOMING),
    ("002_click_to_whatsapp_ads", INCOMING, INCOMING),
    ("002_contact_message", INCOMING, INCOMING),
    ("002_flow_completed", NOT_CLOUD_API, NOT_CLOUD_API),  # the message alone, no envelope
    ("002_list_reply", NOT_JSON, INCOMING),
    ("002_location_message", NOT_JSON, INCOMING),
    ("002_media_message", NOT_JSON, INCOMING),
    ("002_order_message", NOT_JSON, INCOMING),
    ("002_product_inquiry", NOT_JSON, INCOMING),
    ("002_reaction_message", NOT_JSON, INCOMING),
    ("002_reply_button", NOT_JSON, INCOMING),
    ("002_request_welcome", NOT_JSON, INCOMING),
    ("002_status_deleted", NOT_JSON, INCOMING),  # an "unsupported" message, not a status
    ("002_status_delivered_business_initiated", NOT_JSON, STATUS),
    ("002_status_delivered_referral_conversion", NOT_JSON, STATUS),
    ("002_status_delivered_user_initiated", NOT_JSON, STATUS),
    ("002_status_failed", STATUS, STATUS),
    ("002_status_read", STATUS, STATUS),
    ("002_status_sent_business_initiated", NOT_JSON, STATUS),
    ("002_status_sent_referral_conversion", NOT_JSON, STATUS),
    ("002_status_sent_user_initiated", STATUS, STATUS),
    ("002_status_undeliverable_experiment", STATUS, STATUS),
    ("002_sticker_message", INCOMING, INCOMING),
    ("002_text_message", NOT_JSON, INCOMING),
    ("002_unknown_message", NOT_JSON, INCOMING),
    ("002_user_changed_number", NOT_JSON, "system_changes=1"),
    ("002_webhook_format_cloud_api", NOT_JSON, INCOMING),
    ("002_webhook_format_on_premise", NOT_CLOUD_API, NOT_CLOUD_API),  # the retired API's
    ("003_smb_message_echoes_edit", "echoes=1", "echoes=1"),
    ("003_smb_message_echoes_revoke", "echoes=1", "echoes=1"),
    ("003_smb_message_echoes_syntax", NOT_JSON, "echoes=1"),
    ("003_smb_message_echoes_text", "echoes=1", "echoes=1"),
]


def test_every_recorded_body_has_a_reading() -> None:
    assert sorted(name for name, _, _ in READINGS) == [path.stem for path in RECORDED]


@pytest.mark.parametrize(("name", "printed", "_"), READINGS)
def test_a_body_as_the_seed_prints_it_is_read_or_refused_with_the_reason(
    name: str, printed: str, _: str
) -> None:
    assert summary(recorded(name)) == printed


@pytest.mark.parametrize(("name", "_", "expected"), READINGS)
def test_a_body_with_its_placeholders_filled_in_is_read_for_what_it_holds(
    name: str, _: str, expected: str
) -> None:
    assert summary(filled(recorded(name))) == expected


def test_the_kind_meta_reads_bodies_through_the_provider_seam() -> None:
    callback = parse_callback("meta", recorded("002_status_failed"))
    assert [s.message_status for s in callback.statuses] == [MessageStatus.FAILED]


# -- statuses -----------------------------------------------------------------------------

FAILED_WAMID = "wamid.HBgLMTIxMTU1NTc5NDcVAgARGBIyRkQxREUxRDJFQUJGMkQ3NDIA"


@pytest.mark.parametrize(
    ("name", "code", "description"),
    [
        ("002_status_failed", 131014,
         "Request for url https://URL.jpg failed with error: 404 (Not Found)"),
        ("002_status_undeliverable_experiment", 130472,
         "User's number is part of an experiment; "
         "Failed to send message because this user's phone number is part of an experiment"),
    ],
)  # fmt: skip
def test_a_failed_status_carries_whatsapps_code_and_what_it_says(
    name: str, code: int, description: str
) -> None:
    (status,) = read_webhook(recorded(name)).statuses
    assert (status.message_id, status.message_status) == (FAILED_WAMID, MessageStatus.FAILED)
    assert (status.whatsapp_error_code, status.result_description) == (code, description)
    assert (status.result_code, status.is_request_failure) == (None, False)
    assert status.timestamp == datetime(2023, 7, 15, 0, 20, 58, tzinfo=UTC)
    assert status.named_identifiers == ("15551234567",)


def test_a_delivered_status_names_the_person_by_number_bsuid_and_parent_with_pricing() -> None:
    (status,) = read_webhook(recorded("000_status_delivered_phone_and_bsuid")).statuses
    assert status.message_status is MessageStatus.DELIVERED
    assert status.whatsapp_message_id == status.message_id
    assert status.named_identifiers == (
        "16505551234",
        "US.13491208655302741918",
        "US.ENT.11815799212886844830",
    )
    assert status.pricing == Pricing("PMP", "marketing", "regular", True)


def test_a_status_of_a_message_sent_by_number_learns_the_bsuid_from_contacts() -> None:
    """Seed 000: ``recipient_user_id`` is there only for a send to a BSUID; the value's
    ``contacts[]`` names the BSUID of every sent / delivered / read status."""
    body = orjson.loads(recorded("000_status_delivered_phone_and_bsuid"))
    status = body["entry"][0]["changes"][0]["value"]["statuses"][0]
    del status["recipient_user_id"], status["parent_recipient_user_id"]
    (report,) = read_webhook(orjson.dumps(body)).statuses
    assert report.named_identifiers == (
        "16505551234",
        "US.13491208655302741918",
        "US.ENT.11815799212886844830",
    )


def test_our_message_key_comes_back_as_the_status_ref_id() -> None:
    body = orjson.loads(recorded("002_status_failed"))
    body["entry"][0]["changes"][0]["value"]["statuses"][0]["biz_opaque_callback_data"] = "c7-b1"
    (status,) = read_webhook(orjson.dumps(body)).statuses
    assert status.ref_id == "c7-b1"


def test_one_body_of_several_entries_and_changes_gives_every_status_in_order() -> None:
    one = orjson.loads(recorded("002_status_failed"))
    two = orjson.loads(recorded("000_status_delivered_bsuid_only"))
    one["entry"][0]["changes"] += two["entry"][0]["changes"]
    one["entry"].append(orjson.loads(recorded("002_status_read"))["entry"][0])
    statuses = read_webhook(orjson.dumps(one)).statuses
    assert [s.message_status for s in statuses] == [
        MessageStatus.FAILED,
        MessageStatus.DELIVERED,
        MessageStatus.READ,
    ]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"id": 7, "status": "sent"}, []),  # an id that is not a string: skipped
        ({"status": "sent"}, []),
        ({"id": "wamid." + "x" * 200, "status": "sent"}, []),  # longer than any id we keep
        ({"id": "wamid.A", "status": "warning"}, [None]),  # readable, tracks nothing
        ({"id": "wamid.A", "status": "read", "timestamp": "soon", "errors": "no"},
         [MessageStatus.READ]),
    ],
)  # fmt: skip
def test_a_status_entry_that_makes_no_sense_is_skipped_and_odd_fields_read_as_absent(
    status: dict[str, object], expected: list[MessageStatus | None]
) -> None:
    change = {"field": "messages", "value": {"statuses": [status]}}
    body = {"object": "whatsapp_business_account", "entry": [{"changes": [change]}]}
    statuses = read_webhook(orjson.dumps(body)).statuses
    assert [s.message_status for s in statuses] == expected
    assert all(s.timestamp is None and s.whatsapp_error_code is None for s in statuses)


# -- incoming messages ------------------------------------------------------------------


def test_a_text_from_a_bsuid_only_user_names_them_and_the_business_number() -> None:
    (message,) = read_webhook(recorded("000_incoming_message_bsuid_only")).incoming
    assert message.named_identifiers[:2] == (
        "US.13491208655302741918",
        "US.ENT.11815799212886844830",
    )
    assert list(message.replies()) == ["Does it come in another color?"]
    assert message.business_number == "+15550783881"
    assert message.timestamp == datetime.fromtimestamp(1749416383, UTC)
    assert message.reply_context is None


def test_a_quick_reply_button_answers_the_message_its_context_names() -> None:
    (message,) = read_webhook(filled(recorded("002_button_message"))).incoming
    assert list(message.replies()) == ["No", "No-Button-Payload"]
    assert message.reply_context == ReplyContext("wamid.ID", "button", "No-Button-Payload", "No")


@pytest.mark.parametrize(
    ("name", "reply"),
    [("002_list_reply", "list_reply_title"), ("002_reply_button", "button-text")],
)
def test_an_interactive_choice_is_read_by_its_title(name: str, reply: str) -> None:
    body = orjson.loads(filled(recorded(name)))
    message = body["entry"][0]["changes"][0]["value"]["messages"][0]
    message["context"] = {"from": "15550783881", "id": "wamid.OURS"}
    (incoming,) = read_webhook(orjson.dumps(body)).incoming
    assert list(incoming.replies()) == [reply]
    assert incoming.reply_context is not None
    assert (incoming.reply_context.wa_message_id, incoming.reply_context.label) == (
        "wamid.OURS",
        reply,
    )


def test_a_shared_contact_card_links_nobody_but_a_requested_one_links_the_senders_number() -> None:
    """Seed 001: a card the user shares is someone else's; seed 000: one sent at the
    business's REQUEST_CONTACT_INFO (``origin`` "contact_request") is the user's own."""
    (shared,) = read_webhook(recorded("001_contacts_message_example")).incoming
    assert shared.named_identifiers == ("16505551234",)
    body = orjson.loads(filled(recorded("000_contacts_message_requested_contact_info")))
    value = body["entry"][0]["changes"][0]["value"]
    value["contacts"][0]["user_id"] = "US.13491208655302741918"
    message = value["messages"][0]
    message["origin"] = "contact_request"
    message["contacts"][0]["phones"][0]["phone"] = "+1 (650) 555-1234"
    (requested,) = read_webhook(orjson.dumps(body)).incoming
    assert requested.named_identifiers == ("US.13491208655302741918", "16505551234")


@pytest.mark.parametrize(
    ("name", "kind"), [("002_contact_message", "contacts"), ("002_location_message", "location")]
)
def test_a_message_that_does_not_say_its_type_is_known_by_its_content(name: str, kind: str) -> None:
    (message,) = parse_webhook(filled(recorded(name))).incoming
    assert message.type == kind


def test_system_messages_and_echoes_are_parsed_but_are_nobody_writing() -> None:
    changed = parse_webhook(filled(recorded("002_user_changed_number")))
    assert (changed.incoming, changed.statuses) == ((), ())
    (change,) = changed.system_changes
    assert (change.kind, change.old[0], change.new_wa_id) == (
        "user_changed_number", "PHONE_NUMBER", "NEW_PHONE_NUMBER")  # fmt: skip
    echoed = parse_webhook(recorded("003_smb_message_echoes_revoke"))
    assert (echoed.incoming, echoed.statuses) == ((), ())
    (echo,) = echoed.echoes
    assert (echo.type, echo.to[0], echo.business_number) == (
        "revoke",
        "16505551234",
        "+15550783881",
    )
    assert (
        echo.original_message_id == "wamid.HBgLMTQxMjU1NTA4MjkVAgASGBQzQUNCNjk5RDUwNUZGMUZEM0VBRAA="
    )


def test_a_user_id_update_gives_the_old_and_new_bsuid() -> None:
    body = (
        filled(recorded("000_user_id_update"))
        .replace(b"<OLD_BSUID>", b"US.1")
        .replace(b"<NEW_BSUID>", b"US.2")
    )
    (update,) = parse_webhook(body).user_id_updates
    assert (update.previous_user_id, update.current_user_id) == ("US.1", "US.2")


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "not JSON"),
        (b"[]", "object: not 'whatsapp_business_account'"),
        (b'{"object": "page", "entry": []}', "object: not 'whatsapp_business_account'"),
        (b'{"object": "whatsapp_business_account"}', "entry: a list is required"),
        (b'{"object": "whatsapp_business_account", "entry": []}', "entry: no change in it"),
    ],
)
def test_a_body_that_is_not_a_cloud_api_webhook_is_refused_with_the_reason(
    body: bytes, reason: str
) -> None:
    with pytest.raises(InvalidReport, match=re.escape(reason)):
        read_webhook(body)


def test_reading_a_status_body_takes_well_under_a_tenth_of_a_millisecond() -> None:
    """A campaign of 1,000 messages a second brings about 3,000 statuses a second to a
    2-core receiver (measured: about 15 us a body). The best of five runs, so another
    process on the machine does not decide it."""
    body = recorded("000_status_delivered_phone_and_bsuid")
    rounds = 500
    best = min(timeit.repeat(lambda: read_webhook(body), number=rounds, repeat=5))
    assert best / rounds < 100e-6


def test_a_webhook_repr_names_nobody() -> None:
    webhook: Webhook = parse_webhook(recorded("000_status_delivered_phone_and_bsuid"))
    assert "1650555" not in repr(webhook.statuses)


# -- signature and handshake -----------------------------------------------------------------

SECRET = b"demo-secret"
BODY = Path(DATA / "002_status_failed.json").read_bytes()


def test_a_body_signed_with_the_app_secret_is_good_in_either_case_of_hex() -> None:
    header = sign(SECRET, BODY)
    assert header.startswith(b"sha256=") and len(header) == 7 + 64
    assert verify(SECRET, BODY, header) is Signature.GOOD
    assert verify(SECRET, BODY, header.upper().replace(b"SHA256=", b"sha256=")) is Signature.GOOD


@pytest.mark.parametrize(
    ("header", "verdict"),
    [
        (None, Signature.MISSING),
        (b"", Signature.MISSING),
        (b"sha256=" + b"0" * 64, Signature.WRONG),
        (b"sha1=abc", Signature.WRONG),
        (sign(b"another secret", BODY), Signature.WRONG),
        (sign(SECRET, BODY + b" "), Signature.WRONG),  # a byte more: another body
    ],
)
def test_a_missing_or_wrong_signature_is_told_apart(
    header: bytes | None, verdict: Signature
) -> None:
    assert verify(SECRET, BODY, header) is verdict


def test_a_body_fed_in_chunks_is_signed_as_a_whole() -> None:
    mac = start(SECRET)
    for at in range(0, len(BODY), 100):
        mac.update(BODY[at : at + 100])
    assert judge(mac, sign(SECRET, BODY)) is Signature.GOOD


@pytest.mark.parametrize(
    ("query", "answer"),
    [
        (b"hub.mode=subscribe&hub.verify_token=vt&hub.challenge=1158201444", b"1158201444"),
        (b"hub.mode=subscribe&hub.verify_token=other&hub.challenge=1", None),
        (b"hub.mode=unsubscribe&hub.verify_token=vt&hub.challenge=1", None),
        (b"hub.mode=subscribe&hub.verify_token=vt", None),
        (b"", None),
    ],
)
def test_the_handshake_echoes_the_challenge_only_for_our_verify_token(
    query: bytes, answer: bytes | None
) -> None:
    assert challenge_answer(query, b"vt") == answer
