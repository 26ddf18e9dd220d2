"""HTTP clients of the LINK WhatsApp Message API (basic auth): LINK as a ``Provider``.

``LinkClient`` (httpx) does one request at a time and is the ``Provider`` itself;
``ConcurrentSender`` (aiohttp) is its ``SliceSender``, many requests in flight for the
fan-out. HTTP library exceptions stop here: the caller sees the
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
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import httpx
from pydantic import ValidationError

from dispatcher.errors import LinkError, LinkInDoubtError, LinkRequestError, LinkTransientError
from dispatcher.providers.base import Request, SenderInfo, UploadedMedia
from dispatcher.providers.link.codes import QUEUED, REQUEST_ERRORS, error_class_for
from dispatcher.providers.link.models import (
    ErrorResponse,
    MediaErrorResponse,
    MessageRequest,
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
# aiohttp's: no connection made, or none free from the pool in time.
_NOTHING_SENT_AIO = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
# Statuses that say the request was not processed (service unavailable, rate limited).
_NOT_PROCESSED = frozenset({429, 503})


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
    ) -> MessageRequest:
        """The MessageRequest of a batch (its ``refId``); platform ids from the spec,
        else the account's."""
        return MessageRequest(
            platform_id=spec.sender.platform_id or self.credentials.platform_id,
            platform_partner_id=(
                spec.sender.platform_partner_id or self.credentials.platform_partner_id
            ),
            priority=spec.priority,
            absolute_validity_time=valid_until,
            event_report_gates=[event_report_gate] if event_report_gate else None,
            ref_id=batch_id,
            source=spec.sender.source,
            destinations=destinations,
            messages=messages,
        )

    def send(self, request: Request) -> MessageResponse:
        """``POST /messages``; returns the MessageResponse with one id per destination."""
        try:
            response = self._http.post("/messages", json=request.to_wire())
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

    def phone_number_info(self, source: str) -> PhoneNumberInfo:
        """Phone number information API: level, tier and health of a sender."""
        creds = self.credentials
        path = (
            f"/platformId/{quote(creds.platform_id, safe='')}"
            f"/platformPartnerId/{quote(creds.platform_partner_id, safe='')}"
            f"/source/{quote(source, safe='')}"
        )
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
    try:
        answer = MessageResponse.model_validate_json(body)
    except (ValueError, ValidationError) as exc:
        raise LinkInDoubtError(
            f"unreadable 200 answer to refId {request.ref_id}", http_status=200
        ) from exc
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

    aiohttp rather than httpx here: httpcore 1.0's pool walks every connection (and
    polls each idle socket) for every request it assigns (encode/httpcore#1035), which
    at 100 connections cost ~5 ms of CPU a request, measured; aiohttp's pool and C
    parser cost a fraction of that. aiohttp never retries a POST on its own, so the
    nothing-sent / in-doubt split holds. Use within one event loop, then ``aclose``.
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
        self._url = credentials.base_url.rstrip("/") + "/messages"
        token = f"{credentials.username}:{credentials.password}".encode()
        self._headers = {"Authorization": "Basic " + base64.b64encode(token).decode()}
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_seconds, connect=connect_seconds, sock_read=timeout_seconds
        )
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made inside the running loop: aiohttp binds its session to it.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                connector=aiohttp.TCPConnector(
                    limit=self._max_connections, keepalive_timeout=KEEPALIVE
                ),
                json_serialize=_compact_json,
            )
        return self._session

    async def send(self, request: Request) -> MessageResponse:
        session = self._open()
        try:
            async with session.post(self._url, json=request.to_wire()) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _unanswered(
                request, exc, nothing_sent=isinstance(exc, _NOTHING_SENT_AIO)
            ) from exc
        return _answer(request, status, body)

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
        if self._session is not None:
            await self._session.close()
            self._session = None


def _compact_json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


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
