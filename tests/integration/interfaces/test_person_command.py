"""``dispatcher person``: what the dispatcher knows of one person (the identifiers the
book links, their campaign messages, the business app's echoes to them), asked by a
national or international number or a BSUID, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import insert
from typer.testing import CliRunner

from dispatcher.audience import book
from dispatcher.db import Database
from dispatcher.db.models import WhatsAppEcho
from dispatcher.interfaces.cli import app
from tests.integration.conftest import make_batch

runner = CliRunner()
NUMBER, USER, PARENT = "+4791234567", "NO.a1b2c3d4e5", "NO.ENT.f6g7h8"
STRANGER = "+4798765432"
BUSINESS = "+4790000000"


def echo(db: Database, wamid: str, recipient: str, unix: int, kind: str = "text") -> None:
    with db.session() as session:
        session.execute(
            insert(WhatsAppEcho).values(
                business_number=BUSINESS,
                recipient=recipient,
                recipient_user_id=recipient if recipient.startswith("NO.") else None,
                wa_message_id=wamid,
                kind=kind,
                sent_at=datetime.fromtimestamp(unix, UTC),
                report_id=1,
            )
        )


@pytest.fixture()
def known(cli_db: Database) -> Database:
    """A person the book knows by number, BSUID and parent BSUID: a campaign message to
    their number, two echoes to their BSUID; a stranger's message and echo."""
    make_batch(cli_db, [NUMBER], link_ids=["wamid.OURS"])
    make_batch(cli_db, [STRANGER], link_ids=["wamid.THEIRS"])
    with cli_db.session() as session:
        book.learn(session, [NUMBER, USER, PARENT], "dlr")
    echo(cli_db, "wamid.E1", USER, 1750000000, "image")
    echo(cli_db, "wamid.E2", USER, 1750000600, "revoke")
    echo(cli_db, "wamid.E3", STRANGER, 1750000900)
    return cli_db


def person(*args: str) -> str:
    shown = runner.invoke(app, ["person", *args], env={"COLUMNS": "220"})
    assert shown.exit_code == 0, shown.output
    return shown.output


@pytest.mark.parametrize(
    "asked", [["91234567", "--region", "no"], [NUMBER], ["+47 912 34 567"], [USER]]
)
def test_a_person_asked_by_any_identifier_shows_their_identifiers_messages_and_echoes(
    known: Database, asked: list[str]
) -> None:
    output = person(*asked)
    for identifier in (NUMBER, USER, PARENT):
        assert identifier in output  # whole: the operator asked by one of them
    assert "submitted" in output
    lines = output.splitlines()
    image = next(i for i, line in enumerate(lines) if "image" in line)
    revoke = next(i for i, line in enumerate(lines) if "revoke" in line)
    assert revoke < image  # newest first
    assert "2025-06-15 15:16:40" in lines[revoke] and BUSINESS in lines[revoke]
    assert STRANGER not in output


def test_limit_shows_only_the_newest(known: Database) -> None:
    output = person(NUMBER, "--limit", "1")
    assert "revoke" in output and "image" not in output
    assert "--limit shows more" in output


def test_a_person_nobody_knows_is_said_so(cli_db: Database) -> None:
    assert "Nothing is known of +4741234567" in person("41234567", "--region", "NO")


@pytest.mark.parametrize("asked", [["91234567"], ["hello"], ["NO.bad-bsuid"]])
def test_what_is_neither_a_number_nor_a_bsuid_is_a_command_line_error(
    cli_db: Database, asked: list[str]
) -> None:
    shown = runner.invoke(app, ["person", *asked])
    assert shown.exit_code == 2
    assert "not a phone number" in shown.output


def test_the_lookup_logs_no_identifier(known: Database, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    person(NUMBER)
    assert "91234567" not in caplog.text and "a1b2c3d4e5" not in caplog.text
