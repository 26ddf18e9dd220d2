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
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx
import orjson
from pydantic import ValidationError

from dispatcher.errors import ConfigurationError, LinkError, LinkRequestError
from dispatcher.providers.base import Request, SenderInfo, TemplateInfo, UploadedMedia
from dispatcher.providers.http import Answers, HttpClient, RequestSender, json_object, phrase
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
    from typing_extensions import Unpack

    from dispatcher.campaigns.spec import CampaignSpec
    from dispatcher.providers.http import ClientOptions, SenderOptions

#: Translated contents a client keeps: a campaign with one content for everyone
#: translates it once; personalised contents are translated once each anyway.
CONTENTS_KEPT = 1024
#: The phone number's Graph fields pre-flight reads (Meta's reference, 'Phone numbers').
PHONE_NUMBER_FIELDS = ",".join((
    "display_phone_number", "quality_rating", "messaging_limit_tier", "throughput",
    "name_status", "health_status", "is_on_biz_app",
))  # fmt: skip


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

    @property
    def authorization(self) -> str:
        """The bearer token's ``Authorization`` value (never shown)."""
        return f"Bearer {self.access_token}"


class MetaClient(HttpClient[MetaCredentials]):
    """Meta's Cloud API as a ``Provider`` over ``HttpClient`` (bearer token, Graph
    errors)."""

    name = "Meta"

    def __init__(self, credentials: MetaCredentials, **options: Unpack[ClientOptions]) -> None:
        super().__init__(credentials, _error_from, **options)
        self._version = quote(credentials.api_version, safe="")
        self._contents: dict[bytes, bytes] = {}
        self._paths: dict[str, str] = {}

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
        return self.post_request(_path(request), request, ANSWERS)

    def concurrent(self, max_connections: int = 200) -> MetaSender:
        """An asyncio sender on the same account, for many requests in flight at once."""
        return MetaSender(self.credentials, **self.sender_options(max_connections))

    def upload_media(
        self, *, source: str, content_type: str, filename: str, data: bytes
    ) -> UploadedMedia:
        """``POST /{version}/{phone-number-id}/media`` (multipart ``file``, ``type``,
        ``messaging_product``; Meta's reference, 'Upload media'): the media id.
        ``source`` is the sender's phone number id (``SenderSpec.address``)."""
        form = {"messaging_product": "whatsapp", "type": content_type}
        file = ("file", (filename, data, content_type))
        return self.upload(f"{self._node(source)}/media", form, file, _media_id)

    def sender_info(self, source: str) -> SenderInfo:
        """Level, health, tier and quality from the phone number's Graph fields;
        ``source`` is its phone number id."""
        return self.phone_number_fields(source).sender_info()

    def phone_number_fields(self, phone_number_id: str) -> PhoneNumberFields:
        body = self.get_json(
            self._node(phone_number_id), "phone number fields", {"fields": PHONE_NUMBER_FIELDS}
        )
        try:
            return PhoneNumberFields.model_validate(body)
        except ValidationError as exc:
            raise LinkRequestError("unreadable phone number fields", http_status=200) from exc

    def templates(self, source: str) -> list[TemplateInfo]:
        """The WABA's message templates (``GET /{version}/{waba-id}/message_templates``,
        every page; Meta's format, as LINK's list gives it); kept a minute
        (``http.TEMPLATES_KEPT_SECONDS``). Templates belong to the WABA, not to the
        number ``source`` names."""
        waba = self.credentials.waba_id
        if not waba:
            raise ConfigurationError(
                "set META_WABA_ID: templates are listed per WhatsApp Business Account"
            )
        path = f"{self._node(waba)}/message_templates"
        return self.template_list(waba, path, templates.read_list)


class MetaSender(RequestSender[MetaAnswer]):
    """Sends with many in flight (``http1.Http1Sender``); a request head per phone
    number id, built once. Use within one event loop, then ``aclose``."""

    def __init__(self, credentials: MetaCredentials, **options: Unpack[SenderOptions]) -> None:
        super().__init__(credentials, ANSWERS, "META_BASE_URL", **options)
        self._heads: dict[str, bytes] = {}

    def head_for(self, request: Request) -> bytes:
        path = _path(request)
        head = self._heads.get(path)
        if head is None:
            head = self._heads[path] = self.head(path)
        return head


def _path(request: Request) -> str:
    """Where a request goes: only a ``MetaRequest`` knows its phone number's path."""
    if not isinstance(request, MetaRequest):
        raise TypeError(f"Meta sends the requests it built, not {type(request).__name__}")
    return request.path


def _media_id(response: httpx.Response) -> str:
    """The ``id`` of an upload's JSON answer (Meta's reference, 'Upload media')."""
    media_id = (json_object(response.content) or {}).get("id") if response.content else None
    if not isinstance(media_id, str) or not media_id:
        raise LinkRequestError("media upload answered 200 without an id", http_status=200)
    return media_id


def _error_from(status: int, content: bytes) -> LinkError:
    """A Graph error answer in our tree: its code picks the class, its message names
    the code, Meta's details and the trace id Meta's support asks for."""
    error: GraphError | None = None
    body = json_object(content) or {}
    if isinstance(body.get("error"), dict):
        try:
            error = GraphError.model_validate(body["error"])
        except ValidationError:
            error = None
    code = error.code if error else None
    cls = error_class_for(code, status)
    if error is None or code is None:
        return cls(f"Meta {status}: {phrase(status)}", http_status=status)
    text = error.message or described(code) or phrase(status)
    if not text.startswith(f"(#{code})"):
        text = f"(#{code}) {text}"
    if error.details and error.details not in text:
        text = f"{text}: {error.details}"
    if error.error_subcode is not None:
        text = f"{text} (subcode {error.error_subcode})"
    if error.fbtrace_id:
        text = f"{text} [fbtrace_id {error.fbtrace_id}]"
    return cls(f"Meta {status}: {text}", result_code=code, http_status=status, whatsapp_code=code)


def _read_answer(request: Request, body: bytes) -> MetaAnswer | None:
    return read_answer(body)


#: How the Cloud API's send answers read, for ``MetaClient`` and ``MetaSender`` alike;
#: a 5xx without a Graph error is in doubt (``http.Answers``).
ANSWERS = Answers("Meta", "batch", _error_from, _read_answer)
