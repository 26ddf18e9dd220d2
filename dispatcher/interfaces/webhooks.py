"""Webhook app (ASGI): LINK delivery reports and incoming messages, health, status.

Every body is committed to ``delivery_reports`` before it is answered (``ingest``:
group commit, so one commit answers every request that arrived meanwhile):

* 200 once stored (empty, the stored row's id in ``X-Report-Id``); the report is applied
  moments later by the background applier;
* 400 for a body we cannot read (not JSON, required fields missing, an undocumented
  resultCode, over ``intake.MAX_BODY_BYTES``): stored all the same, with the reason;
* 503 when the database cannot take it (LINK retries); never a 500 for bad input.

Callers authenticate with the shared secret ``WEBHOOK_TOKEN``, presented as the
``X-Webhook-Token`` header, a ``token`` query parameter (for gates that only take a
URL), or the password of HTTP basic auth. Unset = open (the embedded default sets one;
``dispatcher serve`` refuses to run open in production). A caller without it gets 401,
or 429 over ``edge.UNAUTHENTICATED_PER_SECOND``; its body is never read nor stored.

Meta's webhooks (``/webhooks/meta``) authenticate by their signature instead
(``X-Hub-Signature-256``, the app secret ``META_APP_SECRET``; Meta's reference): 401
without one, answered before the body is read; 403 for a wrong one, 429 past the
caller's limit; neither is stored. A signed body is stored and answered 200 whatever it
holds: Meta retries anything else for about a day (seed 002), and a body it cannot
read now it will never read. Those are counted (``edge.COUNTERS.unreadable``). A GET
on the path is Meta's subscription handshake: ``hub.challenge`` echoed as plain text
when ``hub.verify_token`` is ``META_VERIFY_TOKEN``, 403 otherwise. Without an app
secret the path is authenticated like LINK's (``WEBHOOK_TOKEN``).

This app is the public side: the webhooks and ``/healthz``. Metrics, campaign status,
the REST API and the console are ``web.app.create_internal_app``'s, served on a
listener of their own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dispatcher.db import Database
from dispatcher.errors import StorageError
from dispatcher.interfaces.edge import COUNTERS, UNAVAILABLE, CallerLimits
from dispatcher.operations import metrics, progress
from dispatcher.providers import WEBHOOKS, load_parsers
from dispatcher.providers import meta_signature as signature
from dispatcher.settings import Settings, get_settings
from dispatcher.tracking.ingest import ApplierMode, ApplierSettings, Ingest
from dispatcher.tracking.intake import MAX_BODY_BYTES, Received, ReportState, read_body

log = logging.getLogger(__name__)
#: The largest id a BIGINT holds: a larger one in a path is simply not found.
MAX_ID = 2**63 - 1
__all__ = ["MAX_BODY_BYTES", "MetaKeys", "Pages", "create_app"]


@dataclass(frozen=True, slots=True)
class MetaKeys:
    """What Meta's webhooks are checked with: the app secret that signs each post and
    the token that answers the subscription handshake (None: not configured)."""

    app_secret: str | None = None
    verify_token: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MetaKeys:
        secret, token = settings.meta_app_secret, settings.meta_verify_token
        return cls(
            secret.get_secret_value() if secret else None,
            token.get_secret_value() if token else None,
        )


def create_app(
    db: Database,
    *,
    token: str | None = None,
    opt_out_words: frozenset[str] | None = None,
    applier: ApplierMode | None = None,
    redis_url: str | None = None,
    limits: CallerLimits | None = None,
    meta: MetaKeys | None = None,
) -> WebhookApp:
    """The webhook ASGI app over ``db``; ``token`` is the shared secret (None = open);
    ``opt_out_words`` (case-folded) default to the ``OPT_OUT_WORDS`` setting; the
    applier runs as ``ingest`` decides for the database unless ``applier`` says;
    rate-limit errors in reports slow their sender in the limiter at ``redis_url``
    (default ``REDIS_URL``); ``limits`` rate-limits callers without the token (by
    default per peer address); ``meta`` checks Meta's webhooks (default
    ``META_APP_SECRET`` and ``META_VERIFY_TOKEN``).

    ``app.state.ingest`` is its ``Ingest``, started and stopped with the app's lifespan.
    """
    load_parsers()
    words = get_settings().opt_out_keywords if opt_out_words is None else opt_out_words
    settings = ApplierSettings(opt_out_words=words, redis_url=redis_url or get_settings().redis_url)
    ingest = Ingest(db, settings=settings, applier=applier)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ingest.start()
        try:
            yield
        finally:
            app.state.stopping = True
            await ingest.close()

    pages = Pages(db, settings.redis_url)
    rest = Starlette(
        routes=[
            Route("/healthz", pages.healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    rest.state.ingest = ingest
    keys = MetaKeys.from_settings(get_settings()) if meta is None else meta
    return WebhookApp(rest, _Receiver(ingest, token, limits or CallerLimits(), keys))


class WebhookApp:
    """The ASGI app. The two webhook paths take every callback LINK sends, so they are
    served here directly, without Starlette's request objects and middleware (about a
    fifth of a request's cost); health, status and the lifespan go to Starlette."""

    def __init__(self, rest: Starlette, receiver: _Receiver) -> None:
        self.rest = rest
        self.receiver = receiver
        self.state = rest.state
        self._callers = 0  # connections that carried a webhook post, still open

    def caller_arrived(self) -> None:
        """A connection carried its first webhook post (the server's protocol says so,
        and ``caller_left`` when it closes): the group commit counts the callers'
        connections, and ends its gather once each holds a body waiting. Strangers,
        health checks and a proxy's unused connections are not counted."""
        self._callers += 1
        self.receiver.ingest.callers = self._count_callers

    def caller_left(self) -> None:
        self._callers -= 1

    def _count_callers(self) -> int:
        return self._callers

    def refusal(self, scope: Scope) -> bytes | None:
        """The whole answer to a webhook post without the token, or to Meta's without a
        signature (401, or 429 over the caller's limit), for the server to write before
        any ASGI work; None to serve it (an authorised caller's scope is marked so, and
        not checked again)."""
        if scope["method"] != "POST" or scope["path"] not in _PATHS:
            return None
        signed = _PATHS[scope["path"]] == _META and self.receiver.app_secret is not None
        if signed:
            # The signature needs the body: only a post without one is refused here (a
            # flood of them costs what one without the token does).
            if _header(scope, signature.HEADER):
                return None
        elif self.receiver.authorised(scope):
            scope[_AUTHORISED] = True
            return None
        if not self.receiver.limits.allow(scope):
            COUNTERS.rate_limited += 1
            return _RATE_LIMITED
        if signed:
            COUNTERS.unsigned += 1
            return _UNSIGNED
        COUNTERS.unauthorised += 1
        return _UNAUTHORISED

    def direct(self, scope: Scope) -> Direct | None:
        """A ``Direct`` reader for a webhook post that the server may take without the
        ASGI cycle (after ``refusal`` let it through), else None."""
        if scope["method"] != "POST":
            return None
        kind = _PATHS.get(scope["path"])
        if kind is None:
            return None
        secret = self.receiver.app_secret
        if kind == _META and secret is not None:
            if not _header(scope, signature.HEADER):
                return None
            return Direct(self.receiver, kind, scope, signature.start(secret))
        if scope.get(_AUTHORISED):
            return Direct(self.receiver, kind, scope, None)
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            kind = _PATHS.get(scope["path"])
            if kind is not None:
                if kind == _META and scope["method"] == "GET":
                    await self.receiver.handshake(scope, send)
                    return
                if scope["method"] != "POST":
                    await _answer(send, 405, {"error": "use POST"})
                    return
                secret = self.receiver.app_secret
                if kind == _META and secret is not None:
                    await self.receiver.receive_signed(scope, receive, send, secret)
                    return
                await self.receiver.receive(scope, receive, send, kind)
                return
        await self.rest(scope, receive, send)


_PATHS = WEBHOOKS
#: The kind of Meta's webhooks (``providers.WEBHOOKS``): signed, always answered 200.
_META = "meta"
#: Scope key the server's protocol sets once it found the caller authorised (``refusal``).
_AUTHORISED = "dispatcher.authorised"


def _canned(status: int, reason: str, content: dict[str, str]) -> bytes:
    body = json.dumps(content).encode()
    return (
        b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
        % (status, reason.encode(), len(body))
    ) + body


_UNAUTHORISED = _canned(401, "Unauthorized", {"error": "unauthorised"})
_RATE_LIMITED = _canned(429, "Too Many Requests", {"error": "too many unauthenticated requests"})
_UNSIGNED = _canned(401, "Unauthorized", {"error": "unsigned: X-Hub-Signature-256 required"})


class _Receiver:
    def __init__(
        self, ingest: Ingest, token: str | None, limits: CallerLimits, meta: MetaKeys
    ) -> None:
        self.ingest = ingest
        self.token = token.encode() if token is not None else None
        self.limits = limits
        self.app_secret = meta.app_secret.encode() if meta.app_secret is not None else None
        self.verify_token = meta.verify_token.encode() if meta.verify_token is not None else None
        # The last query string found to carry the token: LINK's callback URL is the
        # same on every callback, so it is compared whole, not parsed each time.
        self._good_query: bytes | None = None

    def authorised(self, scope: Scope) -> bool:
        if self.token is None:
            return True
        offered: bytes | None = None
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"x-webhook-token":
                offered = value
            elif name == b"authorization":
                authorization = value
        query_string: bytes = scope["query_string"]
        if offered is None and query_string:
            good = self._good_query  # compared in constant time: it holds the token
            if good is not None and hmac.compare_digest(query_string, good):
                return True
            query = parse_qs(query_string.decode("latin-1"))
            offered = query["token"][0].encode() if "token" in query else None
            if offered is not None and hmac.compare_digest(offered, self.token):
                self._good_query = query_string
                return True
        if offered is None and authorization is not None:
            password = _basic_password(authorization.decode("latin-1"))
            offered = password.encode() if password is not None else None
        return offered is not None and hmac.compare_digest(offered, self.token)

    async def receive(self, scope: Scope, receive: Receive, send: Send, kind: str) -> None:
        if not scope.get(_AUTHORISED) and not self.authorised(scope):
            # Counted, never read nor stored: nobody fills the database without the token.
            if not self.limits.allow(scope):
                COUNTERS.rate_limited += 1
                await _answer(send, 429, {"error": "too many unauthenticated requests"})
                return
            COUNTERS.unauthorised += 1
            await _answer(send, 401, {"error": "unauthorised"})
            return
        read = await _read_capped(receive)
        if read is None:
            return  # the caller went away mid-body: nobody to answer, LINK sends it again
        body, size = read
        await self._store(send, kind, body, size)

    async def receive_signed(
        self, scope: Scope, receive: Receive, send: Send, app_secret: bytes
    ) -> None:
        """A post of Meta's: its signature checked over the whole body as received,
        then stored and answered 200 whatever it holds."""
        mac = signature.start(app_secret)
        read = await _read_capped(receive, mac)
        if read is None:
            return  # Meta sends it again
        verdict = signature.judge(mac, _header(scope, signature.HEADER))
        if verdict is not signature.Signature.GOOD:
            # Counted, never stored: nobody fills the database without the app secret.
            await _reply(send, self.signature_refusal(scope, verdict))
            return
        body, size = read
        await self._store(send, _META, body, size)

    async def handshake(self, scope: Scope, send: Send) -> None:
        """Meta's subscription check (Meta's reference, 'Verification Requests')."""
        challenge = None
        if self.verify_token is not None:
            challenge = signature.challenge_answer(scope["query_string"], self.verify_token)
        if challenge is None:
            COUNTERS.bad_verify_token += 1
            await _answer(send, 403, {"error": "verification refused"})
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(challenge)),
                ],
            }
        )
        await send({"type": "http.response.body", "body": challenge})

    async def _store(self, send: Send, kind: str, body: bytes, size: int) -> None:
        received = read_body(kind, body, size=size)
        try:
            stored: int | BaseException = await self.ingest.store(received)
        except StorageError as exc:
            stored = exc
        await _reply(send, stored_reply(kind, received, stored))

    def signature_refusal(self, scope: Scope, verdict: signature.Signature) -> Reply:
        """The answer to a post of Meta's whose signature is missing or wrong."""
        if not self.limits.allow(scope):
            COUNTERS.rate_limited += 1
            return json_reply(429, {"error": "too many unauthenticated requests"})
        if verdict is signature.Signature.MISSING:
            COUNTERS.unsigned += 1
            return json_reply(401, {"error": "unsigned: X-Hub-Signature-256 required"})
        COUNTERS.bad_signature += 1
        return json_reply(403, {"error": "wrong signature"})


#: An answer: status, headers, body.
Reply = tuple[int, list[tuple[bytes, bytes]], bytes]


def json_reply(status: int, content: dict[str, Any]) -> Reply:
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return status, headers, body


def stored_reply(kind: str, received: Received, stored: int | BaseException) -> Reply:
    """The answer to a webhook body once the database took it (its id) or did not."""
    if isinstance(stored, BaseException):
        if not isinstance(stored, StorageError):  # a bug: logged with its traceback
            log.error("cannot store a %s callback", kind, exc_info=stored)
        else:
            log.error("cannot store a %s callback: %s", kind, stored)
        return UNAVAILABLE
    if received.state is ReportState.INVALID:
        if kind != _META:
            return json_reply(400, {"error": received.error, "stored": stored})
        # Seed 002: Meta retries anything but 200 for about a day, and this body
        # will never read better: kept for inspection, counted, taken.
        COUNTERS.unreadable += 1
    # No body: the status line and headers go out in one write, and LINK reads nothing
    # but the status.
    return 200, [(b"content-length", b"0"), (b"x-report-id", b"%d" % stored)], b""


async def _reply(send: Send, reply: Reply) -> None:
    status, headers, body = reply
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class Direct:
    """A webhook post that the public port's protocol reads and answers itself
    (``edge.GuardedHttpToolsProtocol``), without uvicorn's ASGI cycle (a task, the
    scope's events, two writes): the same checks, storage and answers as
    ``WebhookApp.__call__`` gives. Built only for a caller already found authorised by
    its token, or for a post of Meta's that carries a signature (checked over the
    whole body, as received, in ``finish``)."""

    __slots__ = ("_body", "_kind", "_receiver", "_scope")

    def __init__(self, receiver: _Receiver, kind: str, scope: Scope, mac: hmac.HMAC | None) -> None:
        self._receiver = receiver
        self._kind = kind
        self._scope = scope
        self._body = _CappedBody(mac)

    def feed(self, chunk: bytes) -> None:
        """A piece of the body (``_CappedBody``)."""
        self._body.feed(chunk)

    def finish(self, answer: Callable[[Reply], None]) -> None:
        """The body is whole: judge and store it; ``answer`` is called with the reply
        once it is known (after the commit that holds the body)."""
        mac = self._body.mac
        if mac is not None:
            verdict = signature.judge(mac, _header(self._scope, signature.HEADER))
            if verdict is not signature.Signature.GOOD:
                answer(self._receiver.signature_refusal(self._scope, verdict))
                return
        kind = self._kind
        body, size = self._body.whole()
        received = read_body(kind, body, size=size)
        try:
            future = self._receiver.ingest.submit(received)
        except StorageError as exc:
            answer(stored_reply(kind, received, exc))
            return

        def stored(done: asyncio.Future[int]) -> None:
            if done.cancelled():
                outcome: int | BaseException = StorageError("the server is stopping")
            else:
                outcome = done.exception() or done.result()
            try:
                reply = stored_reply(kind, received, outcome)
            except Exception as exc:  # a bug: still answered, in turn
                reply = stored_reply(kind, received, exc)
            answer(reply)

        future.add_done_callback(stored)


class Pages:
    """Health, metrics and one campaign's status: shared by both listeners."""

    def __init__(self, db: Database, redis_url: str | None) -> None:
        self.db = db
        self.redis_url = redis_url

    async def metrics(self, _: Request) -> Response:
        """Prometheus exposition (internal: keep it off the public side of the proxy)."""
        body = await run_in_threadpool(
            metrics.render, self.db, self.redis_url, COUNTERS.as_samples()
        )
        return Response(body + COUNTERS.stored_exposition(), media_type=metrics.CONTENT_TYPE)

    async def healthz(self, request: Request) -> Response:
        # A stop has begun (``servers``): a load balancer sends elsewhere from now on.
        if getattr(request.app.state, "stopping", False):
            return JSONResponse({"status": "stopping"}, status_code=503)
        try:
            await run_in_threadpool(_ping, self.db)
        except StorageError as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def campaign_status(self, request: Request) -> Response:
        try:
            campaign_id = int(request.path_params["campaign_id"])
        except ValueError:
            return JSONResponse({"error": "campaign id must be a number"}, status_code=400)
        if not 0 <= campaign_id <= MAX_ID:
            return JSONResponse({"error": "no such campaign"}, status_code=404)
        found = await run_in_threadpool(_progress, self.db, campaign_id)
        if found is None:
            return JSONResponse({"error": "no such campaign"}, status_code=404)
        return JSONResponse(found)


async def _read_capped(receive: Receive, mac: hmac.HMAC | None = None) -> tuple[bytes, int] | None:
    """The body's first ``MAX_BODY_BYTES`` bytes and its real size; the rest is read
    and dropped, so the connection stays usable for the next callback; all of it is
    fed to ``mac`` when given. None when the caller disconnected first."""
    body = _CappedBody(mac)
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body.feed(message.get("body", b""))
        if not message.get("more_body", False):
            return body.whole()


class _CappedBody:
    """A body as it comes: the first ``MAX_BODY_BYTES`` kept, all of it counted and fed
    to ``mac`` when given."""

    __slots__ = ("_chunks", "_kept", "_size", "mac")

    def __init__(self, mac: hmac.HMAC | None = None) -> None:
        self.mac = mac
        self._chunks: list[bytes] = []
        self._kept = self._size = 0

    def feed(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self.mac is not None:
            self.mac.update(chunk)
        if self._kept < MAX_BODY_BYTES:
            chunk = chunk[: MAX_BODY_BYTES - self._kept]
            self._chunks.append(chunk)
            self._kept += len(chunk)

    def whole(self) -> tuple[bytes, int]:
        """The bytes kept and the body's real size."""
        return b"".join(self._chunks), self._size


async def _answer(send: Send, status: int, content: dict[str, Any]) -> None:
    await _reply(send, json_reply(status, content))


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def _ping(db: Database) -> None:
    with db.session() as session:
        session.execute(text("SELECT 1"))


def _progress(db: Database, campaign_id: int) -> dict[str, Any] | None:
    with db.session() as session:
        found = progress.progress(session, campaign_id)
    return found.as_dict() if found else None
