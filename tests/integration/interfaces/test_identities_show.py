"""``dispatcher identities show``: whose an identifier is now and was before, every
link of the person with its source, time, portfolio, username and retirement, and the
opt-out list, built from the book's own writers (``book.learn_links``,
``changes.apply_change``) on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from dispatcher.audience import book, changes
from dispatcher.db import Database
from dispatcher.db.models import Campaign, Identity, Suppression
from dispatcher.interfaces.cli import app
from tests.integration.conftest import make_batch

runner = CliRunner()
OLD, NEW, USER = "+4791234567", "+4791234568", "NO.a1b2c3d4e5"
NEXT_USER = "NO.z9y8x7w6v5"  # the BSUID of the old number's next owner
LEARNED = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
CHANGED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RECYCLED = datetime(2026, 6, 1, 8, 15, tzinfo=UTC)


@pytest.fixture()
def changed(cli_db: Database) -> Database:
    """A person learned by number and BSUID from a report (username "ada"), who opted
    out and then changed number (seed 002 ``user_changed_number``); a campaign message
    to their old number before the change."""
    make_batch(cli_db, [OLD], link_ids=["wamid.OURS"])
    with cli_db.session() as session:
        session.execute(update(Campaign).values(created_at=LEARNED))
        book.learn_links(
            session, [((OLD, USER), book.Source("dlr", "message 123", LEARNED, "acme"))]
        )
        session.execute(update(Identity).where(Identity.identifier == USER).values(username="ada"))
        session.add(Suppression(identifier=OLD, reason="replied STOP"))
        session.flush()
        retired = changes.apply_change(
            session,
            changes.Change(
                "user_changed_number", (OLD,), (NEW,), (USER,),
                book.Source("system", "report 12", CHANGED),
            ),
        )  # fmt: skip
    assert retired == [OLD]
    return cli_db


@pytest.fixture()
def recycled(changed: Database) -> Database:
    """The old number given to a stranger, who writes in from it with their BSUID; a
    campaign sends to them at it."""
    with changed.session() as session:
        book.learn_links(
            session, [((OLD, NEXT_USER), book.Source("mo", "report 77", RECYCLED, "acme"))]
        )
    make_batch(changed, [OLD])  # created now, after RECYCLED: queued
    return changed


def show(*args: str) -> str:
    shown = runner.invoke(app, ["identities", "show", *args], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    return shown.output


def line_of(output: str, identifier: str) -> str:
    """The identifiers table's row of ``identifier``."""
    return next(
        line
        for line in output.splitlines()
        if line.split()[:1] == [identifier] and line.split()[1:2] in (["msisdn"], ["bsuid"])
    )


def test_current_and_retired_links_are_shown_with_their_sources_times_and_opt_out(
    changed: Database,
) -> None:
    output = show(NEW)
    assert f"{NEW} belongs to person {USER}." in output
    current = line_of(output, USER)
    assert "dlr: message 123" in current and "2026-01-05 09:30" in current
    assert "acme" in current and "ada" in current
    new = line_of(output, NEW)
    assert "system: report 12" in new and "2026-03-01 12:00" in new
    old = line_of(output, OLD)
    assert "dlr: message 123" in old
    assert "2026-03-01 12:00 user_changed_number (report 12)" in old
    # the opt-out followed the person to their current identifiers, not the old number
    assert new.split()[-1] == "yes" and current.split()[-1] == "yes" and old.split()[-1] == "-"
    assert (
        f"Opted out: the person is sent no campaign (on the list: {NEW}, {USER}: replied STOP;"
        " followed the person after user_changed_number (report 12))."
    ) in " ".join(output.split())
    assert "Usernames: ada" in output
    assert "submitted" in output  # the campaign message to the old number is theirs


def test_a_retired_number_nobody_has_since_says_whose_it_was(changed: Database) -> None:
    output = show("91234567", "--region", "NO")
    assert f"{OLD} belongs to nobody in the identity book now." in output
    assert f"It was person {USER} (now {NEW}, {USER}) until 2026-03-01 12:00 UTC" in output
    assert "it is not sent to as theirs" in output
    assert f"Person {USER}" in output and "ada" in output


def test_a_recycled_number_shows_its_next_owner_and_whose_it_was(recycled: Database) -> None:
    output = show(OLD)
    assert f"{OLD} belongs to person {OLD}." in output  # the next owner's key
    assert f"It was person {USER} (now {NEW}, {USER}) until 2026-03-01 12:00 UTC" in output
    assert NEXT_USER in line_of(output, NEXT_USER) and "mo: report 77" in output
    assert "2026-06-01 08:15" in line_of(output, OLD)
    assert "The person is not on the opt-out list." in output  # A's opt-out is not B's
    assert "ada" not in output and "user_changed_number" in output
    # the number's messages before the change are its former owner's, and after it not
    assert "queued" in output and "submitted" not in output
    before = show(NEW)
    assert "submitted" in before and "queued" not in before


def test_a_retired_bsuid_is_shown_retired_and_its_person_current(changed: Database) -> None:
    later = datetime(2026, 4, 1, tzinfo=UTC)
    with changed.session() as session:
        changes.apply_change(
            session,
            changes.Change(
                "user_id_update", (USER,), ("NO.n3wn3wn3w",), (NEW,),
                book.Source("user_id_update", "report 30", later),
            ),
        )  # fmt: skip
    output = show(USER)
    assert f"{USER} belongs to nobody in the identity book now." in output
    assert "until 2026-04-01 00:00 UTC (user_id_update (report 30))" in output
    assert "NO.n3wn3wn3w" in output and "2026-03-01 12:00 user_changed_number" in output
    assert "ada" in line_of(output, USER)


def test_json_is_one_object_with_stable_keys_and_iso_times(recycled: Database) -> None:
    shown = runner.invoke(app, ["identities", "show", OLD, "--json"])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.output)
    assert list(found) == [
        "asked", "known", "linked_now", "person_key", "opted_out", "usernames",
        "identifiers", "formerly", "messages", "echoes",
    ]  # fmt: skip
    assert found["asked"] == OLD and found["linked_now"] is True
    assert found["person_key"] == OLD and found["opted_out"] is False
    by_id = {i["identifier"]: i for i in found["identifiers"]}
    assert set(by_id) == {OLD, NEXT_USER}
    assert by_id[NEXT_USER] | {} == {
        "identifier": NEXT_USER, "kind": "bsuid", "current": True, "learned_from": "mo",
        "source": "report 77", "learned_at": "2026-06-01T08:15:00+00:00", "portfolio": "acme",
        "username": None, "retired": False, "retired_at": None, "retired_by": None,
        "opted_out": False, "opt_out_reason": None,
    }  # fmt: skip
    [was] = found["formerly"]
    assert was == {
        "person_key": USER,
        "identifiers": [NEW, USER],
        "retired_at": "2026-03-01T12:00:00+00:00",
        "retired_by": "user_changed_number (report 12)",
    }
    [message] = found["messages"]
    assert message["destination"] == OLD and message["status"] == "queued"
    assert datetime.fromisoformat(message["updated_at"]).tzinfo is not None


def test_json_of_the_person_shows_retired_links_and_opt_outs(changed: Database) -> None:
    found = json.loads(runner.invoke(app, ["identities", "show", USER, "--json"]).output)
    by_id = {i["identifier"]: i for i in found["identifiers"]}
    assert by_id[OLD]["retired"] is True and by_id[OLD]["current"] is False
    assert by_id[OLD]["retired_at"] == "2026-03-01T12:00:00+00:00"
    assert by_id[NEW]["opted_out"] is True and by_id[OLD]["opted_out"] is False
    assert found["opted_out"] is True and found["usernames"] == ["ada"]


def test_an_unknown_identifier_is_said_so(cli_db: Database) -> None:
    assert "Nothing is known of +4741234567" in show("41234567", "--region", "NO")
    found = json.loads(runner.invoke(app, ["identities", "show", "+4741234567", "--json"]).output)
    assert found["known"] is False and found["person_key"] is None


@pytest.mark.parametrize("asked", [["91234567"], ["hello"], ["NO.bad-bsuid"]])
def test_what_is_neither_a_number_nor_a_bsuid_is_a_command_line_error(
    cli_db: Database, asked: list[str]
) -> None:
    shown = runner.invoke(app, ["identities", "show", *asked])
    assert shown.exit_code == 2
    assert "not a phone number" in shown.output
    assert "Traceback" not in shown.output


def test_person_shows_the_same(changed: Database) -> None:
    shown = runner.invoke(app, ["person", NEW], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    assert "user_changed_number (report 12)" in shown.output
