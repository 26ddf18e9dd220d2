"""The fan-out's HTTP/1.1 sender on asyncio, shared by the providers' ``SliceSender``s.

A personalised campaign sends one request a person, up to a thousand a second from a
few processes, so the client's CPU per request matters more than anything else the
worker does for it. General clients cost more, measured: httpcore 1.0's pool walks
every connection for every request (encode/httpcore#1035, ~5 ms at 100 connections),
and aiohttp builds request, header and timer objects per request (~0.2 ms). Here a
request is one write of bytes built once, on a keep-alive connection of the event
loop's own transports (uvloop's, in a worker: ``sending.fanout``), and its answer a few
callbacks of httptools (llhttp, uvicorn's parser).

Nothing is retried here, so the crash-safety split holds: a failure before the request
was written (no connection, none free in time) sent nothing; any failure after it may
have been queued. A provider subclasses ``Http1Sender`` with what differs: the path a
request goes to, the answer reader and the errors of an unanswered request.
"""

from __future__ import annotations

import asyncio
import ssl
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Generic, TypeVar
from urllib.parse import urlsplit

import httptools

from dispatcher.errors import ConfigurationError, LinkError

# Idle connections are dropped before the server's own keep-alive timeout (uvicorn and
# many proxies: 5 s): a request sent on a connection the server is closing fails with
# no answer, and an unanswered request leaves its batch in doubt.
KEEPALIVE = 2.0

RequestT = TypeVar("RequestT")
AnswerT = TypeVar("AnswerT")


class Http1Sender(ABC, Generic[RequestT, AnswerT]):
    """``POST`` requests with many in flight, within one event loop; ``aclose`` after.

    ``base_url`` is the provider's (its path prefixes every request's), ``authorization``
    the ``Authorization`` header's value (kept in the request heads only: never shown),
    ``setting`` the variable that configures the URL, for the error that names it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        authorization: bytes,
        setting: str,
        timeout_seconds: float,
        connect_seconds: float,
        max_connections: int,
    ) -> None:
        url = urlsplit(base_url.rstrip("/"))
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(f"{setting} is not an http(s) URL: {url.scheme}://...")
        secure = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if secure else 80)
        self._tls = ssl.create_default_context() if secure else None
        self._netloc = url.netloc.rpartition("@")[2]
        self._prefix = url.path
        self._query = f"?{url.query}" if url.query else ""
        self._authorization = authorization
        self._timeout_seconds = timeout_seconds
        self._connect_seconds = connect_seconds
        self._free = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []  # the most recently used last
        self._all: set[_Connection] = set()

    def head(self, path: str) -> bytes:
        """The request line and headers of a ``POST`` to ``path`` (below the base URL),
        up to the value of ``Content-Length``: built once per path by the caller."""
        return (
            f"POST {self._prefix}{path}{self._query} HTTP/1.1\r\nHost: {self._netloc}\r\n"
            .encode("idna")
            + b"Authorization: " + self._authorization
            + b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
            b"Content-Length: "
        )  # fmt: skip

    @abstractmethod
    def head_for(self, request: RequestT) -> bytes:
        """The head (``head``) of the path this request goes to."""

    @abstractmethod
    def body_of(self, request: RequestT) -> bytes:
        """The encoded body of the request."""

    @abstractmethod
    def answer(self, request: RequestT, status: int, body: bytes) -> AnswerT:
        """The provider's reading of an answer: its answer type, or its error raised."""

    @abstractmethod
    def unanswered(self, request: RequestT, exc: Exception, *, nothing_sent: bool) -> LinkError:
        """The error of a request that got no answer: transient when nothing was sent,
        in doubt when it may have been."""

    async def send(self, request: RequestT) -> AnswerT:
        body = self.body_of(request)
        message = b"%s%d\r\n\r\n%s" % (self.head_for(request), len(body), body)
        try:
            connection = await self._acquire()
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise self.unanswered(request, exc, nothing_sent=True) from exc
        try:
            status, answer = await connection.exchange(message, self._timeout_seconds)
        except BaseException as exc:
            self._discard(connection)
            if isinstance(exc, OSError | TimeoutError):
                raise self.unanswered(request, exc, nothing_sent=False) from exc
            raise
        else:
            if connection.reusable:
                connection.idle_since = connection.loop.time()
                self._idle.append(connection)
            else:
                self._discard(connection)
        finally:
            self._free.release()
        return self.answer(request, status, answer)

    async def _acquire(self) -> _Connection:
        """A free connection: the freshest idle one, else a new one; waits at most the
        connect timeout for one to come free (none free: nothing was sent)."""
        if self._free.locked():
            await asyncio.wait_for(self._free.acquire(), self._connect_seconds)
        else:
            await self._free.acquire()
        try:
            loop = asyncio.get_running_loop()
            stale = loop.time() - KEEPALIVE
            while self._idle:
                connection = self._idle.pop()
                if connection.open and connection.idle_since > stale:
                    return connection
                self._discard(connection)
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    _Connection, self._host, self._port, ssl=self._tls,
                    server_hostname=self._host if self._tls else None,
                ),
                self._connect_seconds,
            )  # fmt: skip
        except BaseException:
            self._free.release()
            raise
        self._all.add(connection)
        return connection

    def _discard(self, connection: _Connection) -> None:
        connection.close()
        self._all.discard(connection)

    async def send_all(self, requests: Sequence[RequestT]) -> list[AnswerT | LinkError]:
        """Every request at once; each one's answer or error, in order."""
        results = await asyncio.gather(*(self.send(r) for r in requests), return_exceptions=True)
        out: list[AnswerT | LinkError] = []
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, LinkError):
                raise result
            out.append(result)
        return out

    async def aclose(self) -> None:
        for connection in list(self._all):
            self._discard(connection)
        self._idle.clear()


class _Connection(asyncio.Protocol):
    """One keep-alive connection: a request written, its answer read by httptools."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.idle_since = 0.0
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._sized = False  # the answer says where it ends (length or chunks)
        self._headed = False
        self._keep_alive = True

    @property
    def open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    @property
    def reusable(self) -> bool:
        return self._keep_alive and self.open

    async def exchange(self, message: bytes, timeout_seconds: float) -> tuple[int, bytes]:
        """Write a request; its status and body (OSError if the connection broke,
        TimeoutError when no whole answer came in time)."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("connection closed before the request")
        waiter = self._waiter = self.loop.create_future()
        self._body, self._sized, self._headed = [], False, False
        self._transport.write(message)
        timer = self.loop.call_later(timeout_seconds, self._fail, TimeoutError("no answer in time"))
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._keep_alive = False
            self._fail(ConnectionError(f"unreadable answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self._keep_alive = False
        if self._headed and not self._sized:  # an answer that ends where the connection does
            self._finish()
        self._fail(exc or ConnectionResetError("connection closed before the answer"))

    # httptools callbacks
    def on_header(self, name: bytes, _value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self._sized = True

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._keep_alive = self._keep_alive and self._parser.should_keep_alive()
        self._finish()

    def _finish(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    def _fail(self, exc: BaseException) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        if isinstance(exc, TimeoutError | ConnectionError):
            self._keep_alive = False
            self.close()
