"""HTTP clients of the LINK WhatsApp Message API (basic auth): LINK as a ``Provider``.

``LinkClient`` (httpx) does one request at a time and is the ``Provider`` itself;
``ConcurrentSender`` (HTTP/1.1 on asyncio) is its ``SliceSender``, many requests in
flight for the fan-out. HTTP library exceptions stop here: the caller sees the
``LinkError`` tree only. The split
that matters for crash safety is *did the request leave?* A refused connection or a
pool timeout sent nothing (``LinkTransientError``, safe to retry); a read timeout or a
dropped connection after sending may have queued the messages (``LinkInDoubtError``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import httptools
import httpx
import orjson
from pydantic import ValidationError

from dispatcher.errors import (
    ConfigurationError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers.base import Request, SenderInfo, TemplateInfo, UploadedMedia
from dispatcher.providers.link import templates
from dispatcher.providers.link.codes import QUEUED, REQUEST_ERRORS, error_class_for
from dispatcher.providers.link.models import (
    EncodedRequest,
    Envelope,
    ErrorResponse,
    MediaErrorResponse,
    MessageResponse,
    PhoneNumberInfo,
)

if TYPE_CHECKING:
    from dispatcher.campaigns.spec import CampaignSpec

# Idle connections are dropped before the server's own keep-alive timeout (uvicorn and
# many proxies: 5 s): a request sent on a connection the server is closing fails with
# no answer, and an unanswered request leaves its batch in doubt.
KEEPALIVE = 2.0
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Statuses that say the request was not processed (service unavailable, rate limited).
_NOT_PROCESSED = frozenset({429, 503})
_JSON = {"Content-Type": "application/json"}
#: Request envelopes (the fields a campaign's requests share) a client keeps.
ENVELOPES_KEPT = 64
#: How long a sender's template list is kept: campaigns starting together ask once,
#: and a template approved or paused a minute ago is seen.
TEMPLATES_KEPT_SECONDS = 60.0
#: List Templates pages read at most (Meta pages by 25 by default).
TEMPLATE_PAGES = 40


@dataclass(frozen=True, slots=True)
class LinkCredentials:
    """Account data from the environment; never from campaign files."""

    base_url: str
    username: str
    password: str
    platform_id: str
    platform_partner_id: str

    def __repr__(self) -> str:  # keep the password out of logs and tracebacks
        return f"LinkCredentials(base_url={self.base_url!r}, username={self.username!r})"

    @property
    def account(self) -> str:
        """Which LINK account this is (endpoint, user, platform), as a short digest: a
        media id uploaded through one account means nothing to another."""
        parts = (self.base_url.rstrip("/"), self.username, self.platform_id,
                 self.platform_partner_id)  # fmt: skip
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


#: Sent by the project's simulator (``dispatcher.simulator``), never by LINK: which
#: running instance answered. A restarted simulator has forgotten every upload.
SIMULATOR_INSTANCE_HEADER = "X-Simulator-Instance"


class LinkClient:
    """LINK as a ``Provider``: one pooled connection set per process; pass
    ``transport`` to test without patching."""

    name = "LINK"

    def __init__(
        self,
        credentials: LinkCredentials,
        *,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self._http = httpx.Client(
            base_url=credentials.base_url.rstrip("/"),
            auth=httpx.BasicAuth(credentials.username, credentials.password),
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            transport=transport,
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE
            ),
        )
        self._envelopes: dict[tuple[Any, ...], Envelope] = {}
        self._templates: dict[str, tuple[float, list[TemplateInfo]]] = {}

    @property
    def account(self) -> str:
        return self.credentials.account

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> LinkClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(
        self,
        spec: CampaignSpec,
        batch_id: str,
        destinations: list[str],
        messages: list[dict[str, Any]],
        *,
        valid_until: datetime | None,
        event_report_gate: str | None,
        campaign_id: int,
    ) -> EncodedRequest:
        """The MessageRequest of a batch (its ``refId``), encoded; platform ids from the
        spec, else the account's; ``customParameters`` name the campaign and batch."""
        sender = spec.sender
        key = (sender.platform_id, sender.platform_partner_id, spec.priority,
               event_report_gate, sender.source, campaign_id,
               spec.log_message_content, *sender.platform_service)  # fmt: skip
        envelope = self._envelopes.get(key)
        if envelope is None:
            if len(self._envelopes) >= ENVELOPES_KEPT:
                self._envelopes.clear()
            envelope = self._envelopes[key] = Envelope(
                platform_id=sender.platform_id or self.credentials.platform_id,
                platform_partner_id=(
                    sender.platform_partner_id or self.credentials.platform_partner_id
                ),
                priority=spec.priority,
                event_report_gate=event_report_gate,
                source=sender.source,
                campaign_id=campaign_id,
                log_message_content=spec.log_message_content,
                platform_service=sender.platform_service,
            )
        return EncodedRequest(
            envelope, batch_id, destinations, messages, valid_until,
            relative=spec.validity_as == "relative",
        )  # fmt: skip

    def send(self, request: Request) -> MessageResponse:
        """``POST /messages``; returns the MessageResponse with one id per destination."""
        try:
            response = self._http.post("/messages", content=request.body(), headers=_JSON)
        except httpx.HTTPError as exc:
            raise _unanswered(request, exc, nothing_sent=isinstance(exc, _NOTHING_SENT)) from exc
        return _answer(request, response.status_code, response.content)

    def concurrent(self, max_connections: int = 200) -> ConcurrentSender:
        """An asyncio sender on the same account, for many requests in flight at once."""
        timeout = self._http.timeout
        return ConcurrentSender(
            self.credentials,
            timeout_seconds=timeout.read or 30.0,
            connect_seconds=timeout.connect or 10.0,
            max_connections=max_connections,
        )

    def upload_media(
        self, *, source: str, content_type: str, filename: str, data: bytes
    ) -> UploadedMedia:
        """``POST /media`` (multipart): the media id LINK answers as text/plain."""
        form = {
            "source": source,
            "platformId": self.credentials.platform_id,
            "platformPartnerId": self.credentials.platform_partner_id,
            "mediaContentType": content_type,
        }
        try:
            response = self._http.post(
                "/media", data=form, files={"media": (filename, data, content_type)}
            )
        except httpx.HTTPError as exc:
            # An upload that may have landed costs nothing but a spare media id.
            raise LinkTransientError(f"media upload failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _error_from(response.status_code, response.content, media=True)
        media_id = response.text.strip()
        if not media_id:
            raise LinkRequestError("media upload answered 200 with an empty id", http_status=200)
        return UploadedMedia(media_id, response.headers.get(SIMULATOR_INSTANCE_HEADER))

    def simulator_instance(self) -> str | None:
        """The running simulator's instance at this base URL (``GET /healthz``), or None:
        real LINK, or nothing answering. Asked only about media a simulator took."""
        try:
            response = self._http.get("/healthz")
        except httpx.HTTPError:
            return None
        return response.headers.get(SIMULATOR_INSTANCE_HEADER)

    def sender_info(self, source: str) -> SenderInfo:
        """Level, health and tier from the phone number information API."""
        return self.phone_number_info(source).sender_info()

    def templates(self, source: str) -> list[TemplateInfo]:
        """List Templates (seed 004), every page; kept ``TEMPLATES_KEPT_SECONDS`` per
        sender, so campaigns starting together ask once."""
        now = time.monotonic()
        kept = self._templates.get(source)
        if kept is not None and kept[0] > now:
            return kept[1]
        found: list[TemplateInfo] = []
        after: str | None = None
        for _ in range(TEMPLATE_PAGES):
            params = {"after": after} if after else None
            body = self._get_json(f"{self._source_path(source)}/templates", "template list", params)
            try:
                page, after = templates.read_list(body)
            except ValueError as exc:
                raise LinkRequestError(f"unreadable template list: {exc}", http_status=200) from exc
            found.extend(page)
            if after is None:
                break
        self._templates[source] = (now + TEMPLATES_KEPT_SECONDS, found)
        return found

    def template(self, source: str, template_id: str) -> TemplateInfo:
        """Get Template (seed 004): one template by its id."""
        path = f"{self._source_path(source)}/templates/{quote(template_id, safe='')}"
        try:
            return templates.read_one(self._get_json(path, "template"))
        except ValueError as exc:
            raise LinkRequestError(f"unreadable template: {exc}", http_status=200) from exc

    def _source_path(self, source: str) -> str:
        creds = self.credentials
        return (
            f"/platformId/{quote(creds.platform_id, safe='')}"
            f"/platformPartnerId/{quote(creds.platform_partner_id, safe='')}"
            f"/source/{quote(source, safe='')}"
        )

    def _get_json(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise LinkTransientError(f"{what} failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _error_from(response.status_code, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise LinkRequestError(f"unreadable {what}: not JSON", http_status=200) from exc

    def phone_number_info(self, source: str) -> PhoneNumberInfo:
        """Phone number information API: level, tier and health of a sender."""
        path = self._source_path(source)
        try:
            response = self._http.get(path)
        except httpx.HTTPError as exc:
            raise LinkTransientError(f"phone number info failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _error_from(response.status_code, response.content)
        try:
            return PhoneNumberInfo.model_validate(response.json())
        except (ValueError, ValidationError) as exc:
            raise LinkRequestError("unreadable phone number info", http_status=200) from exc


def _unanswered(request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
    """No answer: nothing left our side (safe to retry), or maybe queued (in doubt)."""
    if nothing_sent:
        return LinkTransientError(f"LINK unreachable: {type(exc).__name__}")
    return LinkInDoubtError(f"no answer to refId {request.ref_id}: {type(exc).__name__}")


def _answer(request: Request, status: int, body: bytes) -> MessageResponse:
    """The MessageResponse of a ``POST /messages`` answer, or the error it means."""
    if status != 200:
        error = _error_from(status, body)
        if (
            isinstance(error, LinkTransientError)
            and error.result_code is None
            and status not in _NOT_PROCESSED
        ):
            # A 502/504 from a proxy without LINK's ErrorResponse: LINK may have
            # queued the request before the gateway gave up.
            raise LinkInDoubtError(str(error), http_status=status)
        raise error
    answer = _accepted(body)
    if answer is None:
        raise LinkInDoubtError(f"unreadable 200 answer to refId {request.ref_id}", http_status=200)
    if answer.result_code != QUEUED or len(answer.message_ids) != len(request.destinations):
        raise LinkInDoubtError(
            f"refId {request.ref_id}: resultCode {answer.result_code} with "
            f"{len(answer.message_ids)} messageIds for {len(request.destinations)} "
            "destinations",
            result_code=answer.result_code,
            http_status=200,
        )
    return answer


class ConcurrentSender:
    """``POST /messages`` with many requests in flight: what a personalised campaign needs
    to reach 1000 requests a second from a few processes.

    HTTP/1.1 keep-alive connections on asyncio's own transports, answers read by
    httptools (llhttp, uvicorn's parser): a request is one write of bytes built once,
    an answer a few parser callbacks. General clients cost more CPU a request than
    everything else the worker does for it, measured: httpcore 1.0's pool walks every
    connection for every request (encode/httpcore#1035, ~5 ms at 100 connections), and
    aiohttp builds request, header and timer objects per request (~0.2 ms). Nothing is
    retried here, so the nothing-sent / in-doubt split holds: a failure before the
    request was written (no connection, none free in time) sent nothing; any failure
    after it may have been queued. Use within one event loop, then ``aclose``.
    """

    def __init__(
        self,
        credentials: LinkCredentials,
        *,
        timeout_seconds: float,
        connect_seconds: float,
        max_connections: int,
    ) -> None:
        self.credentials = credentials
        url = urlsplit(credentials.base_url.rstrip("/") + "/messages")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigurationError(f"LINK_BASE_URL is not an http(s) URL: {url.scheme}://...")
        secure = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if secure else 80)
        self._tls = ssl.create_default_context() if secure else None
        netloc = url.netloc.rpartition("@")[2]
        target = url.path + (f"?{url.query}" if url.query else "")
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode())
        self._head = (
            f"POST {target} HTTP/1.1\r\nHost: {netloc}\r\n".encode("idna")
            + b"Authorization: Basic " + token
            + b"\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
            b"Content-Length: "
        )  # fmt: skip
        self._timeout_seconds = timeout_seconds
        self._connect_seconds = connect_seconds
        self._free = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []  # the most recently used last
        self._all: set[_Connection] = set()

    async def send(self, request: Request) -> MessageResponse:
        body = request.body()
        message = b"%s%d\r\n\r\n%s" % (self._head, len(body), body)
        try:
            connection = await self._acquire()
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            raise _unanswered(request, exc, nothing_sent=True) from exc
        try:
            status, answer = await connection.exchange(message, self._timeout_seconds)
        except BaseException as exc:
            self._discard(connection)
            if isinstance(exc, OSError | TimeoutError):
                raise _unanswered(request, exc, nothing_sent=False) from exc
            raise
        else:
            if connection.reusable:
                connection.idle_since = connection.loop.time()
                self._idle.append(connection)
            else:
                self._discard(connection)
        finally:
            self._free.release()
        return _answer(request, status, answer)

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

    async def send_all(self, requests: Sequence[Request]) -> list[MessageResponse | LinkError]:
        """Every request at once; each one's answer or error, in order."""
        results = await asyncio.gather(*(self.send(r) for r in requests), return_exceptions=True)
        out: list[MessageResponse | LinkError] = []
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


def _accepted(body: bytes) -> MessageResponse | None:
    """A 200 answer's MessageResponse, or None when it is not one. Read by hand: a
    thousand answers a second, and the fan-out needs only the code and the ids."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    code, ids, description = (data.get("resultCode"), data.get("messageIds", []),
                              data.get("description"))  # fmt: skip
    if (
        type(code) is not int
        or not isinstance(ids, list)
        or not all(isinstance(i, str) for i in ids)
        or not (description is None or isinstance(description, str))
    ):
        return None
    return MessageResponse.model_construct(
        result_code=code, description=description, message_ids=ids
    )


def _error_from(status: int, content: bytes, *, media: bool = False) -> LinkError:
    """Translate an error answer (ErrorResponse, or the media error body) into our tree."""
    code: int | None = None
    description: str | None = None
    try:
        body = json.loads(content)
    except ValueError:
        body = None
    if isinstance(body, dict):
        try:
            if media:
                media_error = MediaErrorResponse.model_validate(body)
                code, description = media_error.status, media_error.description
            else:
                error = ErrorResponse.model_validate(body)
                code, description = error.result_code, error.description
        except ValidationError:
            pass
    known = REQUEST_ERRORS.get(code) if code is not None else None
    text = description or (known[1] if known else None) or _phrase(status)
    cls = error_class_for(code, status)
    label = f"{code} " if code is not None else ""
    return cls(f"LINK {status}: {label}{text}", result_code=code, http_status=status)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
