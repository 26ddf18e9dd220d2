"""What the webhook app's public port needs against callers who are not LINK or Meta.

* Slow clients are cut off: a request's head and body must arrive within
  ``request_timeout`` seconds of its first byte (and a new connection must start one
  within that time), so a slowloris cannot hold the server's connections.
* Callers without a valid credential are rate-limited per address (``429`` over the
  limit, ``401`` under it) and counted, never stored; a caller with a valid token or
  signature is never limited, so no genuine callback is dropped.
* The caller's address is the peer's, or, when the peer is a trusted proxy, the last
  ``X-Forwarded-For`` entry that is not itself a trusted proxy.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections import deque
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import httptools
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import Scope
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from dispatcher.errors import ConfigurationError

log = logging.getLogger(__name__)

#: A whole request (head and body) must arrive within this many seconds of its first
#: byte. LINK's and Meta's callbacks are a few hundred bytes: they take milliseconds.
REQUEST_TIMEOUT_SECONDS = 10.0
#: Unauthenticated requests a caller may make per second (a misconfigured gate's
#: retries stay visible as 401s; a flood gets 429s that cost almost nothing).
UNAUTHENTICATED_PER_SECOND = 20
#: Connections the public listener holds at once; more wait in the accept backlog.
MAX_CONNECTIONS = 2000


@dataclass(slots=True)
class EdgeCounters:
    """Refusals at the public port, for ``/metrics`` (this process's since start), and
    the signed bodies taken that held nothing readable."""

    unauthorised: int = 0
    rate_limited: int = 0
    slow_clients: int = 0
    unsigned: int = 0  # Meta's path: no X-Hub-Signature-256 (401)
    bad_signature: int = 0  # Meta's path: a signature that is not the body's (403)
    bad_verify_token: int = 0  # Meta's handshake with another verify token (403)
    #: signed bodies stored and answered 200 that are not JSON, not a Cloud API body,
    #: or of no field read (Meta retries anything else for a day: seed 002)
    unreadable: int = 0

    def as_samples(self) -> dict[str, int]:
        return {
            "unauthorised": self.unauthorised,
            "rate_limited": self.rate_limited,
            "slow_client": self.slow_clients,
            "unsigned": self.unsigned,
            "bad_signature": self.bad_signature,
            "bad_verify_token": self.bad_verify_token,
        }

    def stored_exposition(self) -> bytes:
        """``unreadable`` in Prometheus' text format: stored, so not a refusal."""
        return (
            b"# HELP dispatcher_webhook_unreadable_total Signed webhook bodies stored and "
            b"answered 200 that hold nothing readable\n"
            b"# TYPE dispatcher_webhook_unreadable_total counter\n"
            b'dispatcher_webhook_unreadable_total{kind="meta"} %d\n' % self.unreadable
        )


#: One per process: the protocol class has no other way to reach the app's counters.
COUNTERS = EdgeCounters()


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline on reading each request, refusals
    of callers without the token written before any ASGI work, and webhook posts of
    authorised callers read and answered without the ASGI cycle (the app's
    ``direct``): the callbacks are nearly every request this port takes, and uvicorn's
    task, events and two writes a request were about a third of a callback's cost.

    Answers leave in the order their requests came: a direct answer waits in ``_due``
    until those before it are written; a request that uvicorn would serve arriving
    behind direct answers still due (pipelined: LINK and Meta never do) closes the
    connection once they are written, and its sender tries again.
    """

    request_timeout = REQUEST_TIMEOUT_SECONDS
    _deadline: asyncio.TimerHandle | None = None
    _refusing = False
    _direct: Any = None  # the app's reader of the request being received
    _due: deque[list[bytes | None]] | None = None  # direct answers, in request order
    _close_when_answered = False
    _paused = False  # reading paused while too many direct answers are due
    _posting = False  # has carried a direct post: one of the app's counted callers

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            COUNTERS.slow_clients += 1
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()  # a connection that never sends a byte is cut off too

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._posting:
            self._posting = False
            self.app.caller_left()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._unset_keepalive_if_required()  # one a direct answer may have armed
        self._arm()

    def on_headers_complete(self) -> None:
        if self._close_when_answered:
            # Pipelined behind a request that closes the connection (or during a
            # stop): nothing more is taken; its sender tries again.
            self._refusing = True
            return
        # A caller without the token is answered here, before any task or ASGI
        # event exists (a flood costs a fifth of what a request does); only when no
        # earlier response is still due on this connection (answers stay in order).
        refuse = getattr(self.app, "refusal", None)
        if refuse is not None and (self.cycle is None or self.cycle.response_complete):
            # The request's own scope (headers and client already in it), so a caller
            # found authorised here is not checked again by the app.
            parsed = httptools.parse_url(self.url)
            self.scope["method"] = self.parser.get_method().decode("ascii")
            self.scope["path"] = parsed.path.decode("latin-1")
            self.scope["query_string"] = parsed.query or b""
            answer = refuse(self.scope)
            if answer is not None:
                self._refusing = True
                self._write_in_turn(answer)
                return
            if self._may_take_directly():
                self._direct = self.app.direct(self.scope)
                if self._direct is not None:
                    if not self._posting:  # counted by the group commit while open
                        self._posting = True
                        self.app.caller_arrived()
                    return
        if self._due:  # pipelined behind direct answers: closed once they are written
            self._refusing = True
            self._close_when_answered = True
            return
        super().on_headers_complete()

    def _may_take_directly(self) -> bool:
        # Not an upgrade, not a caller waiting for "100 Continue" (uvicorn's to
        # send), and within uvicorn's own limit on connections (503 past it).
        limit = self.limit_concurrency
        return (
            not self.expect_100_continue
            and not self.parser.should_upgrade()
            and self.parser.get_http_version() == "1.1"
            and (limit is None or len(self.connections) < limit)
            and hasattr(self.app, "direct")
        )

    def on_body(self, body: bytes) -> None:
        if self._direct is not None:
            self._direct.feed(body)
        elif not self._refusing:
            super().on_body(body)

    def on_message_complete(self) -> None:
        self._disarm()
        if self._direct is not None:
            direct, self._direct = self._direct, None
            keep_alive = self.parser.should_keep_alive()
            slot: list[bytes | None] = [None]
            if self._due is None:
                self._due = deque()
            self._due.append(slot)
            if not keep_alive:
                self._close_when_answered = True
            if len(self._due) >= MAX_DUE_ANSWERS:  # a caller that posts and never reads
                self._paused = True
                self.flow.pause_reading()
            try:
                direct.finish(lambda reply: self._answered(slot, reply))
            except Exception:  # a bug: answered in turn, not with uvicorn's 400 ahead
                log.exception("a webhook post could not be taken")
                self._answered(slot, UNAVAILABLE)
            return
        if self._refusing:  # its body read and dropped: the connection goes on
            self._refusing = False
            if self._due or self._close_when_answered:
                self._flush()  # keep-alive (or the close) once the answers are out
                return
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            return
        super().on_message_complete()

    def _answered(self, slot: list[bytes | None], reply: tuple[int, list[Any], bytes]) -> None:
        status, headers, body = reply
        lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"")),
                 *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers),
                 *(b"%s: %s\r\n" % pair for pair in headers)]  # fmt: skip
        # The head's end is written by ``_flush``, which knows whether it is the last.
        slot[0] = b"".join(lines)
        slot.append(body)
        self.server_state.total_requests += 1
        self._flush()

    def _write_in_turn(self, answer: bytes) -> None:
        """Write ``answer`` (a whole response) now, or after the direct answers due."""
        if self._due:
            self._due.append([answer])
        else:
            self.transport.write(answer)

    def _flush(self) -> None:
        """Write the due answers that are ready, in order; then close the connection
        if it is to be closed, or wait for the next request."""
        due = self._due
        while due and due[0][0] is not None:
            answer = due.popleft()
            if self.transport.is_closing():
                continue
            if len(answer) == 1:  # a whole response (a refusal)
                self.transport.write(answer[0])  # type: ignore[arg-type]
                continue
            head, body = answer
            last = not due and self._close_when_answered and self._direct is None
            end = b"connection: close\r\n\r\n" if last else b"\r\n"
            self.transport.write(head + end + body)  # type: ignore[operator]
        if self._paused and len(due or ()) < MAX_DUE_ANSWERS:
            self._paused = False
            self.flow.resume_reading()
        if due or self.transport.is_closing() or self._direct is not None:
            return
        if self._close_when_answered:
            self.transport.close()
            return
        self._unset_keepalive_if_required()
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def shutdown(self) -> None:
        # Direct answers still due are written first (each body is being committed):
        # the connection closes after them.
        if self._due or self._direct is not None:
            self._close_when_answered = True
            return
        super().shutdown()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._disarm()  # idle keep-alive: uvicorn's own timeout closes it


_REASONS = {status.value: status.phrase.encode() for status in HTTPStatus}
#: Direct answers a connection may owe before the server stops reading from it.
MAX_DUE_ANSWERS = 64
_UNAVAILABLE_BODY = b'{"error": "storage unavailable, retry"}'
#: A webhook body the database could not take: the caller sends it again.
UNAVAILABLE = (
    503,
    [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(_UNAVAILABLE_BODY))],
    _UNAVAILABLE_BODY,
)


def guarded_protocol(request_timeout: float = REQUEST_TIMEOUT_SECONDS) -> type[HttpToolsProtocol]:
    """``GuardedHttpToolsProtocol`` with its deadline, for ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedHttpToolsProtocol",
        (GuardedHttpToolsProtocol,),
        {"request_timeout": request_timeout},
    )


class CallerLimits:
    """Per-address limit for requests without a valid credential.

    A moving window: no more than ``per_second`` in any second. A sliding counter's
    estimate lets a burst that straddles two seconds through past the limit, and the
    window keeps about ``per_second`` stamps an address.
    """

    def __init__(
        self,
        per_second: int = UNAUTHENTICATED_PER_SECOND,
        trusted_proxies: frozenset[str] = frozenset(),
    ) -> None:
        self._item = RateLimitItemPerSecond(per_second)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._trusted = _networks(trusted_proxies)

    def allow(self, scope: Scope) -> bool:
        """Counts one unauthenticated request of this caller; False over its limit."""
        return bool(self._limiter.hit(self._item, self.caller(scope)))

    def caller(self, scope: Scope) -> str:
        client = scope.get("client")
        peer = client[0] if client else "unknown"
        if not self._trusted or not self._is_trusted(peer):
            return peer
        forwarded: list[str] = []
        for name, value in scope["headers"]:
            if name == b"x-forwarded-for":
                forwarded.extend(part.strip() for part in value.decode("latin-1").split(","))
        for address in reversed(forwarded):
            if address and not self._is_trusted(address):
                return address
        return peer

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)


def _networks(entries: frozenset[str]) -> tuple[Any, ...]:
    networks = []
    for entry in sorted(entries):
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ConfigurationError(
                f"TRUSTED_PROXIES: {entry!r} is not an address or network (10.0.0.5, 10.0.0.0/8)"
            ) from None
    return tuple(networks)


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (``localhost`` included)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
