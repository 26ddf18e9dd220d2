"""Seed 004's own DLR and MO examples (tests/data/webhooks/, repairs listed in its
README) posted to the webhook app over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select

from dispatcher.db import Database, DeliveryReport, Identity, Message
from dispatcher.db.models import CareWindow
from tests.conftest import ROOT
from tests.integration.conftest import Receiver, make_batch

DATA = ROOT / "tests" / "data" / "webhooks"
BODIES = sorted(p.name for p in DATA.glob("*.json"))
DLRS = [name for name in BODIES if name.startswith("dlr_")]
MOS = [name for name in BODIES if name.startswith("mo_")]

SE_USER, SE_PARENT = "SE.13491208655302741918", "SE.ENT.11815799212886844830"

#: The status and resultCode each report gives its message (seed 004 'Possible
#: resultCodes in Message Status Notifications').
STATUS = {
    "dlr_delivered.json": ("delivered", 112003),
    "dlr_sent.json": ("sent", 112006),
    "dlr_sent_msisdn_and_bsuid.json": ("sent", 112006),
    "dlr_sent_bsuid_only.json": ("sent", 112006),
    "dlr_failed_meta_error.json": ("failed", 112403),
}
#: The WhatsApp error code of each failure report: ``(#100)`` in its resultDescription.
WHATSAPP_ERROR = {"dlr_failed_meta_error.json": 100}
#: The identifiers each report's customParameters name (seed 004 'BSUID - Message
#: Status Notifications - DLRs (MT) updates').
DLR_NAMES = {
    "dlr_delivered.json": set(),
    "dlr_sent.json": set(),
    "dlr_sent_msisdn_and_bsuid.json": {"+4600000002", SE_USER, SE_PARENT},
    "dlr_sent_bsuid_only.json": {SE_USER, SE_PARENT},
    "dlr_failed_meta_error.json": {SE_USER},
}
#: The identifiers of each incoming message's sender: ``source`` and the BSUIDs of its
#: customParameters (seed 004 'BSUID - Incoming Message Webhooks (MO) updates').
SENDER = {
    "mo_text.json": {"+46000000001"},
    "mo_text_bsuid_in_custom_parameters.json": {"+46000000001", SE_USER, SE_PARENT},
    "mo_text_bsuid_source.json": {SE_USER, SE_PARENT},
    "mo_media_image.json": {"+46000000001"},
    "mo_interactive_button_reply.json": {"+46000000001"},
    "mo_interactive_list_reply.json": {"+46000000001"},
    "mo_media_sticker.json": {"+46000000001"},
    "mo_reaction.json": {"+46000000001"},
}


def raw(name: str) -> bytes:
    return (DATA / name).read_bytes()


def matching_batch(db: Database, name: str) -> None:
    """A submitted batch with one message carrying the report's messageId, sent to the
    destination the report names (else its BSUID, else a phone number)."""
    body: dict[str, Any] = json.loads(raw(name))
    custom = body.get("customParameters") or {}
    sent_to = custom.get("destination") or custom.get("whatsappUserId") or "+4791234567"
    make_batch(db, [sent_to], link_ids=[body["messageId"]])


def post(receiver: Receiver, name: str) -> int:
    """Post a recorded body as LINK would; returns the stored row's id."""
    path = "/webhooks/link/dlr" if name.startswith("dlr_") else "/webhooks/link/mo"
    response = receiver.post(path, raw(name))
    assert response.status_code == 200, response.text
    receiver.wait_applied()
    return int(response.headers["x-report-id"])


def message(db: Database) -> Message:
    with db.session() as session:
        found = session.scalar(select(Message))
        assert found is not None
        return found


def persons(db: Database) -> set[frozenset[str]]:
    """The identity book as sets of identifiers held to be one person."""
    by_key: dict[str, set[str]] = {}
    with db.session() as session:
        for identifier, key in session.execute(select(Identity.identifier, Identity.person_key)):
            by_key.setdefault(key, set()).add(identifier)
    return {frozenset(identifiers) for identifiers in by_key.values()}


def one_person(identifiers: set[str]) -> set[frozenset[str]]:
    # The book keeps links between identifiers: one identifier alone links nobody.
    return {frozenset(identifiers)} if len(identifiers) > 1 else set()


@pytest.mark.parametrize("name", BODIES)
def test_a_recorded_body_is_answered_200_kept_byte_for_byte_and_applied(
    receiver: Receiver, db: Database, name: str
) -> None:
    if name.startswith("dlr_"):
        matching_batch(db, name)
    report_id = post(receiver, name)
    with db.session() as session:
        row = session.get(DeliveryReport, report_id)
        assert row is not None
        assert (row.kind, row.body, row.state, row.error) == (
            name.partition("_")[0],
            raw(name),
            "applied",
            None,
        )


@pytest.mark.parametrize("name", DLRS)
def test_a_recorded_status_report_moves_its_message_to_the_documented_status(
    receiver: Receiver, db: Database, name: str
) -> None:
    matching_batch(db, name)
    post(receiver, name)
    found = message(db)
    assert (found.status, found.result_code) == STATUS[name]


@pytest.mark.parametrize("name", list(WHATSAPP_ERROR))
def test_a_recorded_failure_report_keeps_its_whatsapp_error_code_and_description(
    receiver: Receiver, db: Database, name: str
) -> None:
    matching_batch(db, name)
    post(receiver, name)
    found = message(db)
    description = json.loads(raw(name))["resultDescription"]
    assert (found.whatsapp_error_code, found.result_description) == (
        WHATSAPP_ERROR[name],
        description,
    )
    assert found.failed_at is not None


@pytest.mark.parametrize("name", DLRS)
def test_a_recorded_status_report_teaches_the_book_the_identifiers_it_names(
    receiver: Receiver, db: Database, name: str
) -> None:
    matching_batch(db, name)
    post(receiver, name)
    assert persons(db) == one_person(DLR_NAMES[name])


@pytest.mark.parametrize("name", MOS)
def test_a_recorded_incoming_message_teaches_the_book_who_sent_it(
    receiver: Receiver, db: Database, name: str
) -> None:
    post(receiver, name)
    assert persons(db) == one_person(SENDER[name])


@pytest.mark.parametrize("name", MOS)
def test_a_recorded_incoming_message_opens_the_care_window_of_every_identifier_of_its_sender(
    receiver: Receiver, db: Database, name: str
) -> None:
    post(receiver, name)
    with db.session() as session:
        assert set(session.scalars(select(CareWindow.identifier))) == SENDER[name]
