"""HTTP clients of the LINK WhatsApp Message API (basic auth): LINK as a ``Provider``.

``LinkClient`` (httpx) does one request at a time and is the ``Provider`` itself;
``ConcurrentSender`` (``providers.http1``, HTTP/1.1 on asyncio) is its ``SliceSender``,
many requests in flight for the fan-out. HTTP library exceptions stop here: the caller
sees the ``LinkError`` tree only. The split that matters for crash safety is *did the
request leave?* A refused connection or a pool timeout sent nothing
(``LinkTransientError``, safe to retry); a read timeout or a dropped connection after
sending may have queued the messages (``LinkInDoubtError``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from dispatcher.errors import (
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
)
from dispatcher.providers.base import Request, SenderInfo, TemplateInfo, UploadedMedia
from dispatcher.providers.http1 import KEEPALIVE, Http1Sender
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


class ConcurrentSender(Http1Sender[Request, MessageResponse]):
    """``POST /messages`` with many requests in flight (``http1.Http1Sender``): what a
    personalised campaign needs to reach 1000 requests a second from a few processes.
    Use within one event loop, then ``aclose``."""

    def __init__(
        self,
        credentials: LinkCredentials,
        *,
        timeout_seconds: float,
        connect_seconds: float,
        max_connections: int,
    ) -> None:
        token = base64.b64encode(f"{credentials.username}:{credentials.password}".encode())
        super().__init__(
            credentials.base_url,
            authorization=b"Basic " + token,
            setting="LINK_BASE_URL",
            timeout_seconds=timeout_seconds,
            connect_seconds=connect_seconds,
            max_connections=max_connections,
        )
        self.credentials = credentials
        self._head = self.head("/messages")

    def head_for(self, request: Request) -> bytes:
        return self._head

    def body_of(self, request: Request) -> bytes:
        return request.body()

    def answer(self, request: Request, status: int, body: bytes) -> MessageResponse:
        return _answer(request, status, body)

    def unanswered(self, request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
        return _unanswered(request, exc, nothing_sent=nothing_sent)


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
