"""The internal listener's app: metrics and campaign status for monitoring, the REST
API under ``/api`` and the console under ``/console``, every part behind API keys
(``auth``). Never on the public listener: ``dispatcher serve`` gives it a port of its
own (default 127.0.0.1:8001)."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from html import escape
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from dispatcher.db import Database
from dispatcher.interfaces import actions
from dispatcher.interfaces.edge import CallerLimits
from dispatcher.interfaces.web import api, console
from dispatcher.interfaces.web.auth import ApiError, WebContext, require
from dispatcher.interfaces.webhooks import Pages
from dispatcher.operations.access import Scope
from dispatcher.settings import get_settings

SESSION_COOKIE = "dispatcher_session"
SESSION_HOURS = 12
#: The most a request body may carry before anything parses it: an upload (the files'
#: cap plus their multipart framing), a login (a key), anything else (a form, JSON).
UPLOAD_BODY_BYTES = actions.MAX_UPLOAD_BYTES + 1024 * 1024
LOGIN_BODY_BYTES = 16 * 1024
OTHER_BODY_BYTES = 1024 * 1024
_UPLOADS = ("/api/campaigns", "/api/schedules", "/console/new")
_LOGINS = ("/console/login", "/console/logout")

Endpoint = Callable[[Request], Awaitable[Response]]


def create_internal_app(db: Database, *, redis_url: str | None = None) -> ASGIApp:
    """The app over ``db``: every page but ``/healthz`` asks for an API key (Prometheus
    sends a read key as its bearer token), the console's pages a logged-in session."""
    settings = get_settings()
    url = redis_url or settings.redis_url
    pages = Pages(db, url)
    secret = settings.session_secret
    app = Starlette(
        routes=[
            Route("/healthz", pages.healthz, methods=["GET"]),
            Route("/metrics", _reading(pages.metrics), methods=["GET"]),
            Route(
                "/campaigns/{campaign_id}",
                _reading(pages.campaign_status),
                methods=["GET"],
            ),
            Route("/", _home, methods=["GET"]),
            Mount("/api", routes=api.routes()),
            Mount("/console", routes=console.routes()),
        ],
        middleware=[
            Middleware(
                SessionMiddleware,
                secret_key=secret.get_secret_value() if secret else secrets.token_urlsafe(32),
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_HOURS * 3600,
                same_site="strict",
                https_only=settings.session_cookie_secure,
            )
        ],
        exception_handlers={ApiError: _api_error, HTTPException: _http_error},
    )
    strangers = CallerLimits(trusted_proxies=settings.trusted_proxy_networks)
    app.state.web = WebContext(db=db, redis_url=url, settings=settings, strangers=strangers)
    return BodyCap(app)


def _reading(endpoint: Endpoint) -> Endpoint:
    """A monitoring page: any key (read is enough)."""

    async def guarded(request: Request) -> Response:
        await require(request, Scope.READ)
        return await endpoint(request)

    return guarded


async def _home(_: Request) -> Response:
    return RedirectResponse("/console/", status_code=303)


def _is_console(request: Request) -> bool:
    return request.url.path.startswith("/console")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    if _is_console(request) and "application/json" not in request.headers.get("accept", ""):
        if exc.status == 401:  # a session that ended (revoked key, new secret): log in
            back = request.url.path if request.method in ("GET", "HEAD") else "/console/"
            target = quote(back, safe="/")
            return RedirectResponse(f"/console/login?next={target}", status_code=303)
        return _page(exc.status, exc.error)
    body: dict[str, object] = {"error": exc.error}
    if exc.detail is not None:
        body["detail"] = exc.detail
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if _is_console(request):
        return _page(exc.status_code, exc.detail)
    return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def _page(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html lang=en><meta charset=utf-8><title>Dispatcher</title>"
        f"<main><h1>{status}</h1><p>{escape(message)}</p>"
        '<p><a href="/console/">Campaigns</a></p></main></html>',
        status_code=status,
    )


class BodyCap:
    """Bounds every request body before the app reads it: a declared length over the
    cap is answered 413 unread; a body without one (chunked) is cut where it passes
    the cap, and answered 413. Starlette's form parser keeps fields in memory and
    spools files without a bound, and a login page answers strangers."""

    def __init__(self, app: Starlette) -> None:
        self.app = app
        self.state = app.state

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        cap = _cap(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > cap):
            await _too_large(send, cap)
            return
        seen = 0
        over = started = False

        async def capped() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > cap:
                    over = True
                    return {"type": "http.disconnect"}
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if over:
                return  # the 413 below is the answer
            started = True
            await send(message)

        try:
            await self.app(scope, capped, sending)
        except Exception:
            if not over:
                raise
        if over and not started:
            await _too_large(send, cap)


def _cap(path: str) -> int:
    if path.startswith(_UPLOADS):
        return UPLOAD_BODY_BYTES
    if path in _LOGINS:
        return LOGIN_BODY_BYTES
    return OTHER_BODY_BYTES


async def _too_large(send: Send, cap: int) -> None:
    body = b'{"error": "request body over %d bytes"}' % cap
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
