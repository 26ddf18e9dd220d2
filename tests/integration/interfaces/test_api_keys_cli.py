"""``dispatcher api-keys``: made and shown once, listed without secrets, revoked, and
the audit trail read back."""

from __future__ import annotations

from typer.testing import CliRunner

from dispatcher.db import Database
from dispatcher.interfaces.cli import app
from dispatcher.operations import access

runner = CliRunner()


def test_a_key_is_printed_once_listed_without_its_secret_and_revoked(cli_db: Database) -> None:
    made = runner.invoke(app, ["api-keys", "create", "nightly-job", "--scope", "send", "--quiet"])
    assert made.exit_code == 0, made.output
    secret = made.output.strip()
    with cli_db.session() as session:
        assert access.authenticate(session, secret) is not None
    listed = runner.invoke(app, ["api-keys", "list", "--json"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    assert '"name": "nightly-job"' in listed.output and '"scope": "send"' in listed.output
    assert secret not in listed.output
    revoked = runner.invoke(app, ["api-keys", "revoke", "nightly-job"])
    assert revoked.exit_code == 0, revoked.output
    with cli_db.session() as session:
        assert access.authenticate(session, secret) is None
    again = runner.invoke(app, ["api-keys", "create", "nightly-job"])
    assert again.exit_code == 1
    assert "exists" in again.output and "Traceback" not in again.output


def test_a_name_that_looks_like_markup_is_shown_as_written(cli_db: Database) -> None:
    made = runner.invoke(app, ["api-keys", "create", "x[/]"], env={"COLUMNS": "200"})
    assert made.exit_code == 0, made.output
    assert "'x[/]'" in made.output and "wcd_" in made.output
    listed = runner.invoke(app, ["api-keys", "list"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0 and "x[/]" in listed.output, listed.output


def test_the_audit_trail_shows_who_did_what(cli_db: Database) -> None:
    with cli_db.session() as session:
        key_id, _ = access.create_key(session, "ops", access.Scope.SEND)
        access.audit(
            session, access.Caller(key_id, "ops", access.Scope.SEND), "campaign.pause",
            "campaign:3", 200,
        )  # fmt: skip
    shown = runner.invoke(app, ["api-keys", "audit"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "campaign.pause" in shown.output and "campaign:3" in shown.output
