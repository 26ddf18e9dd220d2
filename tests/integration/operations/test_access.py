"""API keys: made once, kept as a digest, checked, revoked; the audit trail."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from dispatcher.db import ApiKey, AuditEvent, Database
from dispatcher.errors import DispatcherError
from dispatcher.operations import access
from dispatcher.operations.access import Caller, Scope


def test_a_key_is_shown_once_and_kept_only_as_its_digest(db: Database) -> None:
    with db.session() as session:
        key_id, secret = access.create_key(session, "marketing-ci", Scope.SEND)
    assert secret.startswith("wcd_") and len(secret) > 50
    with db.session() as session:
        row = session.get(ApiKey, key_id)
        assert row is not None
        assert secret not in (row.digest, row.prefix, row.name)
        assert row.digest == hashlib.sha256(secret.encode()).hexdigest()
        assert access.authenticate(session, secret) == Caller(key_id, "marketing-ci", Scope.SEND)
        assert row.last_used_at is not None


@pytest.mark.parametrize(
    "offered",
    ["", "wcd_", "wcd_abc", "Bearer x", "wcd_{prefix}_wrong", "{secret}x", "x{secret}"],
)
def test_malformed_unknown_or_altered_keys_are_refused(db: Database, offered: str) -> None:
    with db.session() as session:
        _, secret = access.create_key(session, "k", Scope.READ)
    prefix = secret.split("_")[1]
    with db.session() as session:
        assert access.authenticate(session, offered.format(prefix=prefix, secret=secret)) is None


def test_revoked_keys_and_their_sessions_are_refused(db: Database) -> None:
    with db.session() as session:
        key_id, secret = access.create_key(session, "gone", Scope.SEND)
    with db.session() as session:
        access.revoke(session, "gone")
    with db.session() as session:
        assert access.authenticate(session, secret) is None
        assert access.caller_by_id(session, key_id) is None
        with pytest.raises(DispatcherError, match="no key named"):
            access.revoke(session, "never")


def test_names_are_unique_and_bounded(db: Database) -> None:
    with db.session() as session:
        access.create_key(session, "ops", Scope.READ)
    with db.session() as session, pytest.raises(DispatcherError, match="exists"):
        access.create_key(session, "ops", Scope.SEND)
    with db.session() as session, pytest.raises(DispatcherError, match="1 to 100"):
        access.create_key(session, " ", Scope.SEND)


def test_a_read_key_reads_and_a_send_key_does_both() -> None:
    reader, sender = Caller(1, "r", Scope.READ), Caller(2, "s", Scope.SEND)
    assert reader.can(Scope.READ) and not reader.can(Scope.SEND)
    assert sender.can(Scope.READ) and sender.can(Scope.SEND)


def test_the_audit_trail_names_who_did_what(db: Database) -> None:
    who = Caller(7, "ops", Scope.SEND)
    with db.session() as session:
        access.audit(session, who, "campaign.pause", "campaign:3", 200, {"batches": 2})
        access.audit(session, None, "login", None, 401)
    with db.session() as session:
        latest = access.trail(session, 10)
        assert [(e.key_name, e.action, e.target, e.status) for e in latest] == [
            (None, "login", None, 401),
            ("ops", "campaign.pause", "campaign:3", 200),
        ]
        assert session.scalar(select(AuditEvent.detail).where(AuditEvent.key_id == 7)) == {
            "batches": 2
        }
