"""HTTP client of Meta's WhatsApp Cloud API (bearer token): Meta as a ``Provider``.

``MetaClient`` (httpx) does one call at a time and is the ``Provider`` itself;
``MetaSender`` (``providers.http1``) is its ``SliceSender`` for the fan-out. The Cloud
API takes one recipient a request (seed 000), so every Meta campaign is one person a
request, at up to 1,000 a second per number: a request's body is assembled from bytes
translated once per content, and answers are read by hand.

HTTP library exceptions stop here; callers see the ``LinkError`` tree only, with the
same crash-safety split as LINK: a refused connection or a pool timeout sent nothing
(``LinkTransientError``); a timeout or a dropped connection after the request left, or
a 5xx without a Graph error body, may have sent it (``LinkInDoubtError``). A Graph
error body means Meta refused the call, so nothing was sent: its code picks the class
(``codes``).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

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
from dispatcher.providers.http1 import KEEPALIVE, Http1Sender
from dispatcher.providers.link import templates
from dispatcher.providers.meta.codes import described, error_class_for
from dispatcher.providers.meta.models import (
    GraphError,
    MetaAnswer,
    MetaRequest,
    PhoneNumberFields,
    encode_content,
    read_answer,
)

if TYPE_CHECKING:
    from dispatcher.campaigns.spec import CampaignSpec

_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Statuses that say the request was not processed (service unavailable, rate limited).
_NOT_PROCESSED = frozenset({429, 503})
_JSON = {"Content-Type": "application/json"}
#: Translated contents a client keeps: a campaign with one content for everyone
#: translates it once; personalised contents are translated once each anyway.
CONTENTS_KEPT = 1024
#: How long a WABA's template list is kept: campaigns starting together ask once.
TEMPLATES_KEPT_SECONDS = 60.0
#: Template list pages read at most (Graph pages by 25 by default).
TEMPLATE_PAGES = 40
#: The phone number's Graph fields pre-flight reads (Meta's reference, 'Phone numbers').
PHONE_NUMBER_FIELDS = ",".join((
    "display_phone_number", "quality_rating", "messaging_limit_tier", "throughput",
    "name_status", "health_status", "is_on_biz_app",
))  # fmt: skip
#: Sent by the project's simulator, never by Meta: which running instance answered.
SIMULATOR_INSTANCE_HEADER = "X-Simulator-Instance"


@dataclass(frozen=True, slots=True)
class MetaCredentials:
    """Account data from the environment (``META_*``); never from campaign files."""

    base_url: str
    access_token: str
    api_version: str = "v23.0"
    #: the WhatsApp Business Account, whose message templates campaigns are checked against
    waba_id: str | None = None

    def __repr__(self) -> str:  # keep the token out of logs and tracebacks
        return (
            f"MetaCredentials(base_url={self.base_url!r}, api_version={self.api_version!r}, "
            f"waba_id={self.waba_id!r})"
        )

    @property
    def account(self) -> str:
        """Which account this is, as a short digest: endpoint and token (a media id
        belongs to the app and business the token speaks for), not the phone number."""
        parts = ("meta", self.base_url.rstrip("/"), self.access_token, self.waba_id or "")
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


class MetaClient:
    """Meta's Cloud API as a ``Provider``: one pooled connection set per process; pass
    ``transport`` to test without patching."""

    name = "Meta"

    def __init__(
        self,
        credentials: MetaCredentials,
        *,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self._version = quote(credentials.api_version, safe="")
        self._http = httpx.Client(
            base_url=credentials.base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {credentials.access_token}"},
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            transport=transport,
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE
            ),
        )
        self._contents: dict[bytes, bytes] = {}
        self._paths: dict[str, str] = {}
        self._templates: dict[str, tuple[float, list[TemplateInfo]]] = {}

    @property
    def account(self) -> str:
        return self.credentials.account

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> MetaClient:
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
    ) -> MetaRequest:
        """The send of one person's batch; ``batch_id`` goes as
        ``biz_opaque_callback_data`` so statuses name it. ``valid_until`` and
        ``event_report_gate`` have no Cloud API counterpart and are not sent; the
        campaign is named by the batch id itself."""
        del valid_until, event_report_gate, campaign_id
        number = spec.sender.phone_number_id
        if number is None:
            raise ValueError("a Meta sender needs its phone_number_id")
        if len(messages) != 1:
            raise ValueError("a Cloud API request carries one message")
        return MetaRequest(
            self.messages_path(number), batch_id, destinations, messages,
            self._content(messages[0]),
        )  # fmt: skip

    def messages_path(self, phone_number_id: str) -> str:
        """``/{version}/{phone-number-id}/messages``, built once per number."""
        path = self._paths.get(phone_number_id)
        if path is None:
            path = self._paths[phone_number_id] = f"{self._node(phone_number_id)}/messages"
        return path

    def _content(self, message: Mapping[str, Any]) -> bytes:
        key = orjson.dumps(message)
        content = self._contents.get(key)
        if content is None:
            if len(self._contents) >= CONTENTS_KEPT:
                self._contents.clear()
            content = self._contents[key] = encode_content(message)
        return content

    def _node(self, node_id: str) -> str:
        return f"/{self._version}/{quote(node_id, safe='')}"

    def send(self, request: Request) -> MetaAnswer:
        """``POST /{version}/{phone-number-id}/messages``; the answer's wamid."""
        try:
            response = self._http.post(_path(request), content=request.body(), headers=_JSON)
        except httpx.HTTPError as exc:
            raise _unanswered(request, exc, nothing_sent=isinstance(exc, _NOTHING_SENT)) from exc
        return _answer(request, response.status_code, response.content)

    def concurrent(self, max_connections: int = 200) -> MetaSender:
        """An asyncio sender on the same account, for many requests in flight at once."""
        timeout = self._http.timeout
        return MetaSender(
            self.credentials,
            timeout_seconds=timeout.read or 30.0,
            connect_seconds=timeout.connect or 10.0,
            max_connections=max_connections,
        )

    def upload_media(
        self, *, source: str, content_type: str, filename: str, data: bytes
    ) -> UploadedMedia:
        """``POST /{version}/{phone-number-id}/media`` (multipart ``file``, ``type``,
        ``messaging_product``; Meta's reference, 'Upload media'): the media id.
        ``source`` is the sender's phone number id (``SenderSpec.address``)."""
        form = {"messaging_product": "whatsapp", "type": content_type}
        try:
            response = self._http.post(
                f"{self._node(source)}/media",
                data=form,
                files={"file": (filename, data, content_type)},
            )
        except httpx.HTTPError as exc:
            # An upload that may have landed costs nothing but a spare media id.
            raise LinkTransientError(f"media upload failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise _error_from(response.status_code, response.content)
        media_id = _json(response.content).get("id") if response.content else None
        if not isinstance(media_id, str) or not media_id:
            raise LinkRequestError("media upload answered 200 without an id", http_status=200)
        return UploadedMedia(media_id, response.headers.get(SIMULATOR_INSTANCE_HEADER))

    def simulator_instance(self) -> str | None:
        """The running simulator's instance at this base URL (``GET /healthz``), or None:
        Meta itself, or nothing answering."""
        try:
            response = self._http.get("/healthz")
        except httpx.HTTPError:
            return None
        return response.headers.get(SIMULATOR_INSTANCE_HEADER)

    def sender_info(self, source: str) -> SenderInfo:
        """Level, health, tier and quality from the phone number's Graph fields;
        ``source`` is its phone number id."""
        return self.phone_number_fields(source).sender_info()

    def phone_number_fields(self, phone_number_id: str) -> PhoneNumberFields:
        body = self._get_json(
            self._node(phone_number_id), "phone number fields", {"fields": PHONE_NUMBER_FIELDS}
        )
        try:
            return PhoneNumberFields.model_validate(body)
        except ValidationError as exc:
            raise LinkRequestError("unreadable phone number fields", http_status=200) from exc

    def templates(self, source: str) -> list[TemplateInfo]:
        """The WABA's message templates (``GET /{version}/{waba-id}/message_templates``,
        every page; Meta's format, as LINK's list gives it); kept
        ``TEMPLATES_KEPT_SECONDS``. Templates belong to the WABA, not to the number
        ``source`` names."""
        waba = self.credentials.waba_id
        if not waba:
            raise ConfigurationError(
                "set META_WABA_ID: templates are listed per WhatsApp Business Account"
            )
        now = time.monotonic()
        kept = self._templates.get(waba)
        if kept is not None and kept[0] > now:
            return kept[1]
        found: list[TemplateInfo] = []
        after: str | None = None
        for _ in range(TEMPLATE_PAGES):
            params = {"after": after} if after else None
            body = self._get_json(f"{self._node(waba)}/message_templates", "template list", params)
            try:
                page, after = templates.read_list(body)
            except ValueError as exc:
                raise LinkRequestError(f"unreadable template list: {exc}", http_status=200) from exc
            found.extend(page)
            if after is None:
                break
        self._templates[waba] = (now + TEMPLATES_KEPT_SECONDS, found)
        return found

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


class MetaSender(Http1Sender[Request, MetaAnswer]):
    """Sends with many in flight (``http1.Http1Sender``); a request head per phone
    number id, built once. Use within one event loop, then ``aclose``."""

    def __init__(
        self,
        credentials: MetaCredentials,
        *,
        timeout_seconds: float,
        connect_seconds: float,
        max_connections: int,
    ) -> None:
        super().__init__(
            credentials.base_url,
            authorization=b"Bearer " + credentials.access_token.encode(),
            setting="META_BASE_URL",
            timeout_seconds=timeout_seconds,
            connect_seconds=connect_seconds,
            max_connections=max_connections,
        )
        self._heads: dict[str, bytes] = {}

    def head_for(self, request: Request) -> bytes:
        path = _path(request)
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = self.head(path)
        return head

    def body_of(self, request: Request) -> bytes:
        return request.body()

    def answer(self, request: Request, status: int, body: bytes) -> MetaAnswer:
        return _answer(request, status, body)

    def unanswered(self, request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
        return _unanswered(request, exc, nothing_sent=nothing_sent)


def _path(request: Request) -> str:
    """Where a request goes: only a ``MetaRequest`` knows its phone number's path."""
    if not isinstance(request, MetaRequest):
        raise TypeError(f"Meta sends the requests it built, not {type(request).__name__}")
    return request.path


def _unanswered(request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
    """No answer: nothing left our side (safe to retry), or maybe sent (in doubt)."""
    if nothing_sent:
        return LinkTransientError(f"Meta unreachable: {type(exc).__name__}")
    return LinkInDoubtError(f"no answer to batch {request.ref_id}: {type(exc).__name__}")


def _answer(request: Request, status: int, body: bytes) -> MetaAnswer:
    """The answer of a send, or the error it means."""
    if status != 200:
        error = _error_from(status, body)
        if (
            isinstance(error, LinkTransientError)
            and error.result_code is None
            and status not in _NOT_PROCESSED
        ):
            # A 5xx without a Graph error: a proxy or Meta's front gave up, and the
            # message may have been taken before it did.
            raise LinkInDoubtError(str(error), http_status=status)
        raise error
    answer = read_answer(body)
    if answer is None:
        raise LinkInDoubtError(f"unreadable 200 answer to batch {request.ref_id}", http_status=200)
    return answer


def _error_from(status: int, content: bytes) -> LinkError:
    """A Graph error answer in our tree: its code picks the class, its message names
    the code, Meta's details and the trace id Meta's support asks for."""
    error: GraphError | None = None
    body = _json(content)
    if isinstance(body.get("error"), dict):
        try:
            error = GraphError.model_validate(body["error"])
        except ValidationError:
            error = None
    code = error.code if error else None
    cls = error_class_for(code, status)
    if error is None or code is None:
        return cls(f"Meta {status}: {_phrase(status)}", http_status=status)
    text = error.message or described(code) or _phrase(status)
    if not text.startswith(f"(#{code})"):
        text = f"(#{code}) {text}"
    if error.details and error.details not in text:
        text = f"{text}: {error.details}"
    if error.error_subcode is not None:
        text = f"{text} (subcode {error.error_subcode})"
    if error.fbtrace_id:
        text = f"{text} [fbtrace_id {error.fbtrace_id}]"
    return cls(f"Meta {status}: {text}", result_code=code, http_status=status)


def _json(content: bytes) -> dict[str, Any]:
    """A JSON object body, or an empty one when the body is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {}
    return body if isinstance(body, dict) else {}


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
