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
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from dispatcher.errors import LinkError, LinkInDoubtError, LinkRequestError
from dispatcher.providers.base import Request, SenderInfo, TemplateInfo, UploadedMedia
from dispatcher.providers.http import (
    SIMULATOR_INSTANCE_HEADER,
    Answers,
    HttpClient,
    RequestSender,
    json_object,
    phrase,
)
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
    from typing_extensions import Unpack

    from dispatcher.campaigns.spec import CampaignSpec
    from dispatcher.providers.http import ClientOptions, SenderOptions

# The simulator's tests check that the client reads the header it sends.
__all__ = ["SIMULATOR_INSTANCE_HEADER", "ConcurrentSender", "LinkClient", "LinkCredentials"]

#: Request envelopes (the fields a campaign's requests share) a client keeps.
ENVELOPES_KEPT = 64


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

    @property
    def authorization(self) -> str:
        """Basic auth's ``Authorization`` value (never shown: it holds the password)."""
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


class LinkClient(HttpClient[LinkCredentials]):
    """LINK as a ``Provider`` over ``HttpClient`` (basic auth, LINK's ErrorResponse);
    the envelope a campaign's requests share is built once."""

    name = "LINK"

    def __init__(self, credentials: LinkCredentials, **options: Unpack[ClientOptions]) -> None:
        super().__init__(credentials, _error_from, **options)
        self._envelopes: dict[tuple[Any, ...], Envelope] = {}

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
        return self.post_request("/messages", request, ANSWERS)

    def concurrent(self, max_connections: int = 200) -> ConcurrentSender:
        """An asyncio sender on the same account, for many requests in flight at once."""
        return ConcurrentSender(self.credentials, **self.sender_options(max_connections))

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
        file = ("media", (filename, data, content_type))
        return self.upload("/media", form, file, _media_id, _media_error_from)

    def sender_info(self, source: str) -> SenderInfo:
        """Level, health and tier from the phone number information API."""
        return self.phone_number_info(source).sender_info()

    def templates(self, source: str) -> list[TemplateInfo]:
        """List Templates (seed 004), every page; kept a minute per sender
        (``http.TEMPLATES_KEPT_SECONDS``), so campaigns starting together ask once."""
        path = f"{self._source_path(source)}/templates"
        return self.template_list(source, path, templates.read_list)

    def template(self, source: str, template_id: str) -> TemplateInfo:
        """Get Template (seed 004): one template by its id."""
        path = f"{self._source_path(source)}/templates/{quote(template_id, safe='')}"
        try:
            return templates.read_one(self.get_json(path, "template"))
        except ValueError as exc:
            raise LinkRequestError(f"unreadable template: {exc}", http_status=200) from exc

    def _source_path(self, source: str) -> str:
        creds = self.credentials
        return (
            f"/platformId/{quote(creds.platform_id, safe='')}"
            f"/platformPartnerId/{quote(creds.platform_partner_id, safe='')}"
            f"/source/{quote(source, safe='')}"
        )

    def phone_number_info(self, source: str) -> PhoneNumberInfo:
        """Phone number information API: level, tier and health of a sender."""
        body = self.get_json(self._source_path(source), "phone number info")
        try:
            return PhoneNumberInfo.model_validate(body)
        except ValidationError as exc:
            raise LinkRequestError("unreadable phone number info", http_status=200) from exc


def _queued(request: Request, body: bytes) -> MessageResponse | None:
    """A 200 answer's MessageResponse when LINK queued every destination; None when
    unreadable. A 502/504 from a proxy without LINK's ErrorResponse is in doubt
    (``http.Answers``): LINK may have queued the request before the gateway gave up."""
    answer = _accepted(body)
    if answer is None:
        return None
    if answer.result_code != QUEUED or len(answer.message_ids) != len(request.destinations):
        raise LinkInDoubtError(
            f"refId {request.ref_id}: resultCode {answer.result_code} with "
            f"{len(answer.message_ids)} messageIds for {len(request.destinations)} "
            "destinations",
            result_code=answer.result_code,
            http_status=200,
        )
    return answer


class ConcurrentSender(RequestSender[MessageResponse]):
    """``POST /messages`` with many requests in flight (``http1.Http1Sender``): what a
    personalised campaign needs to reach 1000 requests a second from a few processes.
    Use within one event loop, then ``aclose``."""

    def __init__(self, credentials: LinkCredentials, **options: Unpack[SenderOptions]) -> None:
        super().__init__(credentials, ANSWERS, "LINK_BASE_URL", **options)
        self.credentials: LinkCredentials = credentials
        self._head = self.head("/messages")

    def head_for(self, request: Request) -> bytes:
        return self._head


def _media_id(response: httpx.Response) -> str:
    """The media id LINK answers an upload with, as text/plain."""
    media_id = response.text.strip()
    if not media_id:
        raise LinkRequestError("media upload answered 200 with an empty id", http_status=200)
    return media_id


def _accepted(body: bytes) -> MessageResponse | None:
    """A 200 answer's MessageResponse, or None when it is not one. Read by hand: a
    thousand answers a second, and the fan-out needs only the code and the ids."""
    data = json_object(body)
    if data is None:
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


def _media_error_from(status: int, content: bytes) -> LinkError:
    return _error_from(status, content, media=True)


def _error_from(status: int, content: bytes, *, media: bool = False) -> LinkError:
    """Translate an error answer (ErrorResponse, or the media error body) into our tree."""
    code: int | None = None
    description: str | None = None
    body = json_object(content)
    if body is not None:
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
    text = description or (known[1] if known else None) or phrase(status)
    cls = error_class_for(code, status)
    label = f"{code} " if code is not None else ""
    return cls(f"LINK {status}: {label}{text}", result_code=code, http_status=status)


#: How LINK's send answers read, for ``LinkClient`` and ``ConcurrentSender`` alike.
ANSWERS = Answers("LINK", "refId", _error_from, _queued)
