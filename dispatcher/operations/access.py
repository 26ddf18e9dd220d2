"""API keys and the audit trail: who may use the REST API, the console and the
internal listener, and what each did.

A key reads ``wcd_<prefix>_<secret>``. The prefix finds the row; only the SHA-256 of
the whole key is stored, so a copy of the database holds no usable key. A plain hash is
enough for a random 256-bit secret (nothing to guess, unlike a password: GitHub's and
Stripe's tokens are kept so too); a slow hash would only slow every request.

Two scopes: ``read`` sees campaigns, reports and metrics; ``send`` also uploads,
starts, pauses, resumes and cancels, and keeps the suppression list and schedules.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.db import ApiKey, AuditEvent
from dispatcher.db.models import utcnow
from dispatcher.db.timestamps import aware
from dispatcher.errors import DispatcherError

KEY_PREFIX = "wcd_"
#: ``last_used_at`` is written at most this often a key (not on every request).
USED_EVERY = timedelta(minutes=1)
NAME_MAX = 100


class Scope(StrEnum):
    READ = "read"
    SEND = "send"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated key: what the audit trail names and the routes check."""

    key_id: int
    name: str
    scope: Scope

    def can(self, needed: Scope) -> bool:
        return needed is Scope.READ or self.scope is Scope.SEND


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    name: str
    scope: Scope
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(secret: str) -> str | None:
    """The lookup prefix of a well-formed key, else None."""
    if not secret.startswith(KEY_PREFIX):
        return None
    prefix, sep, rest = secret[len(KEY_PREFIX) :].partition("_")
    if not sep or not rest or len(prefix) > 16:
        return None
    return prefix


def create_key(
    session: Session, name: str, scope: Scope, *, replace: bool = False
) -> tuple[int, str]:
    """A new key: its id and the secret, which is not kept and cannot be shown again.
    ``replace``: a key of that name is deleted first (the embedded default's login key,
    new at every run)."""
    name = name.strip()
    if not name or len(name) > NAME_MAX:
        raise DispatcherError(f"a key's name is 1 to {NAME_MAX} characters")
    if replace:
        session.execute(delete(ApiKey).where(ApiKey.name == name))
    elif session.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
        raise DispatcherError(f"a key named {name!r} exists (revoke it first, or pick another)")
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey(name=name, scope=str(scope), prefix=prefix, digest=_digest(secret))
    session.add(key)
    try:
        session.flush()
    except IntegrityError:  # the same name made at the same moment elsewhere
        raise DispatcherError(f"a key named {name!r} exists") from None
    return key.id, secret


def authenticate(session: Session, secret: str) -> Caller | None:
    """The caller a key stands for; None for a malformed, unknown or revoked one."""
    prefix = _split(secret)
    if prefix is None:
        return None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None or key.revoked_at is not None:
        return None
    if not hmac.compare_digest(key.digest, _digest(secret)):
        return None
    now = utcnow()
    last = key.last_used_at
    if last is None or now - aware(last) >= USED_EVERY:
        session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return Caller(key.id, key.name, Scope(key.scope))


def caller_by_id(session: Session, key_id: int) -> Caller | None:
    """A console session's key, looked at again on every request: a revoked key's
    sessions end with it."""
    key = session.get(ApiKey, key_id)
    if key is None or key.revoked_at is not None:
        return None
    return Caller(key.id, key.name, Scope(key.scope))


def revoke(session: Session, name: str) -> int:
    """Revoke the key named ``name`` (its id); its sessions end at their next request."""
    key = session.scalar(select(ApiKey).where(ApiKey.name == name))
    if key is None:
        raise DispatcherError(f"no key named {name!r}")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key.id


def keys(session: Session) -> list[KeyInfo]:
    return [
        KeyInfo(k.id, k.name, Scope(k.scope), k.created_at, k.last_used_at, k.revoked_at)
        for k in session.scalars(select(ApiKey).order_by(ApiKey.id))
    ]


def audit(
    session: Session,
    caller: Caller | None,
    action: str,
    target: str | None,
    status: int,
    detail: dict[str, Any] | None = None,
) -> None:
    """One line of the trail: committed with the session it is written in."""
    session.add(
        AuditEvent(
            key_id=caller.key_id if caller else None,
            key_name=caller.name if caller else None,
            action=action[:64],
            target=target[:200] if target else None,
            status=status,
            detail=detail,
        )
    )


def trail(session: Session, limit: int = 100) -> list[AuditEvent]:
    """The latest events, newest first."""
    return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))
