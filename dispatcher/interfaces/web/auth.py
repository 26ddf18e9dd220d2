"""Who is asking: an API key as a bearer token (batch jobs, Prometheus, curl) or the
console's session cookie (people), and what they may do.

A session is a signed cookie (Starlette's ``SessionMiddleware``) holding the key's id
and a CSRF token; the key is looked up on every request, so revoking it ends its
sessions. A request that changes something on a session's credentials must carry the
CSRF token (header ``X-CSRF-Token`` or form field ``csrf``): a bearer key cannot be
sent by another site's page, a cookie can. The cookie is SameSite=Strict as well.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from dispatcher.db import Database
from dispatcher.interfaces.actions import Settled
from dispatcher.interfaces.edge import CallerLimits
from dispatcher.operations import access
from dispatcher.operations.access import Caller, Scope
from dispatcher.settings import Settings

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SESSION_KEY = "key_id"
CSRF_KEY = "csrf"
CSRF_HEADER = "x-csrf-token"


class ApiError(Exception):
    """An answer other than success: rendered as ``{"error": ..., "detail": ...}`` on the
    API's paths, as a login redirect (401) or a short page on the console's."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


@dataclass(frozen=True, slots=True)
class WebContext:
    """What every route needs (``app.state.web``)."""

    db: Database
    redis_url: str | None
    settings: Settings
    #: Callers without a valid key, per address: past the limit they get 429, unread
    #: and not written to the audit trail (which they could otherwise fill).
    strangers: CallerLimits = field(default_factory=CallerLimits)
    #: The status documents of campaigns that ended, shared by every list asked for.
    settled: Settled = field(default_factory=Settled)


def context(request: Request) -> WebContext:
    web: WebContext = request.app.state.web
    return web


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


async def caller(request: Request) -> Caller | None:
    """The key behind this request, if any (looked up once a request)."""
    if hasattr(request.state, "caller"):
        found: Caller | None = request.state.caller
        return found
    db = context(request).db
    token = _bearer(request)
    found = None
    if token is not None:
        found = await run_in_threadpool(_by_secret, db, token)
        request.state.via_session = False
    else:
        key_id = request.session.get(SESSION_KEY) if "session" in request.scope else None
        if isinstance(key_id, int):
            found = await run_in_threadpool(_by_id, db, key_id)
            if found is None:  # revoked meanwhile: the session ends
                request.session.pop(SESSION_KEY, None)
        request.state.via_session = found is not None
    request.state.caller = found
    return found


async def require(request: Request, scope: Scope) -> Caller:
    """The caller, allowed ``scope``; else ``ApiError`` 401 (no or bad key), 403 (a
    read key asking to send, or a session's change without its CSRF token)."""
    found = await caller(request)
    if found is None:
        stranger(request)
        if _bearer(request) is not None:
            raise ApiError(401, "unauthorised: unknown or revoked API key")
        raise ApiError(401, "unauthorised: send an API key as 'Authorization: Bearer <key>'")
    if not found.can(scope):
        raise ApiError(403, f"forbidden: key {found.name!r} has scope {found.scope}, not {scope}")
    if request.method not in SAFE_METHODS and request.state.via_session:
        await check_csrf(request)
    return found


def stranger(request: Request) -> None:
    """Count a request without a valid key; ``ApiError`` 429 past the address's limit
    (``edge.UNAUTHENTICATED_PER_SECOND``)."""
    if not context(request).strangers.allow(request.scope):
        raise ApiError(429, "too many requests without a valid key: slow down")


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get(CSRF_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_KEY] = token
    return token


async def check_csrf(request: Request, offered: str | None = None) -> None:
    """``ApiError`` 403 unless the request carries this session's CSRF token."""
    if offered is None:
        offered = request.headers.get(CSRF_HEADER)
    if offered is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get(CSRF_KEY)
        offered = value if isinstance(value, str) else None
    expected = request.session.get(CSRF_KEY)
    if not offered or not isinstance(expected, str) or not hmac.compare_digest(offered, expected):
        raise ApiError(403, "forbidden: missing or wrong CSRF token (reload the page)")


def log_in(request: Request, who: Caller) -> None:
    """Start a session for ``who``: a fresh CSRF token (none from before the login)."""
    request.session.clear()
    request.session[SESSION_KEY] = who.key_id
    request.session[CSRF_KEY] = secrets.token_urlsafe(32)
    request.state.caller = who
    request.state.via_session = True


def log_out(request: Request) -> None:
    request.session.clear()


async def log_in_with(request: Request, secret: str) -> Caller | None:
    """The caller of a pasted key, logged in; None when the key is not valid."""
    found = await run_in_threadpool(_by_secret, context(request).db, secret.strip())
    if found is not None:
        log_in(request, found)
    return found


async def audited(
    request: Request,
    who: Caller | None,
    action: str,
    target: str | None,
    status: int,
    detail: dict[str, Any] | None = None,
) -> None:
    """Write one line of the audit trail (who, what, on what, answered how)."""
    await run_in_threadpool(_audit, context(request).db, who, action, target, status, detail)


def _by_secret(db: Database, secret: str) -> Caller | None:
    with db.session() as session:
        return access.authenticate(session, secret)


def _by_id(db: Database, key_id: int) -> Caller | None:
    with db.session() as session:
        return access.caller_by_id(session, key_id)


def _audit(
    db: Database,
    who: Caller | None,
    action: str,
    target: str | None,
    status: int,
    detail: dict[str, Any] | None,
) -> None:
    with db.session() as session:
        access.audit(session, who, action, target, status, detail)
