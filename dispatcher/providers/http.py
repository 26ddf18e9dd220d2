"""The one-at-a-time HTTP side both providers' clients share (httpx, synchronous).

``HttpClient`` holds the pooled ``httpx.Client`` and what every provider call on it
does alike: JSON reads, the paged template list, the simulator's instance, closing.
``Answers`` reads a send's answer, for the one-at-a-time client and for the fan-out's
``RequestSender`` (``http1``) alike, so the two cannot drift apart.

The crash-safety split is the same for every provider: a refused connection or a pool
timeout sent nothing (``LinkTransientError``, safe to retry); a timeout or a dropped
connection after the request left may have sent it (``LinkInDoubtError``), and so may
a 5xx without the provider's error body (a proxy or the provider's front gave up),
unless its status says the request was not processed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypedDict, TypeVar

import httpx
import orjson

from dispatcher.errors import LinkError, LinkInDoubtError, LinkRequestError, LinkTransientError
from dispatcher.providers.base import Request, TemplateInfo, UploadedMedia
from dispatcher.providers.http1 import KEEPALIVE, Http1Sender

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.12

#: httpx failures that happened before the request left our side.
NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Statuses that say the request was not processed (service unavailable, rate limited).
NOT_PROCESSED = frozenset({429, 503})
JSON_HEADERS = {"Content-Type": "application/json"}
#: Sent by the project's simulator (``dispatcher.simulator``), never by a provider:
#: which running instance answered. A restarted simulator has forgotten every upload.
SIMULATOR_INSTANCE_HEADER = "X-Simulator-Instance"
#: How long a template list is kept: campaigns starting together ask once, and a
#: template approved or paused a minute ago is seen.
TEMPLATES_KEPT_SECONDS = 60.0
#: Template list pages read at most (Meta's format pages by 25 by default).
TEMPLATE_PAGES = 40

AnswerT = TypeVar("AnswerT")
CredentialsT = TypeVar("CredentialsT", bound="Credentials")
#: An error answer (status, body) in our tree, read the provider's way.
ErrorReader = Callable[[int, bytes], LinkError]
#: One page of a template list: its templates and the next page's ``after`` cursor.
PageReader = Callable[[Any], tuple[list[TemplateInfo], str | None]]


class Credentials(Protocol):
    """What the shared client and sender need of a provider's credentials."""

    @property
    def base_url(self) -> str: ...

    @property
    def account(self) -> str: ...

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header's value."""
        ...


class ClientOptions(TypedDict, total=False):
    """How a client is made, beyond its credentials (``HttpClient``)."""

    timeout_seconds: float
    transport: httpx.BaseTransport | None


class SenderOptions(TypedDict):
    """How a fan-out sender is made, beyond its credentials (``Http1Sender``)."""

    timeout_seconds: float
    connect_seconds: float
    max_connections: int


class HttpClient(Generic[CredentialsT]):
    """One pooled connection set per process on a provider's base URL, authorised by
    its credentials; ``error_from`` reads its error answers. Pass ``transport`` to test
    without patching."""

    def __init__(
        self,
        credentials: CredentialsT,
        error_from: ErrorReader,
        *,
        timeout_seconds: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.credentials = credentials
        self._error_from = error_from
        self._http = httpx.Client(
            base_url=credentials.base_url.rstrip("/"),
            headers={"Authorization": credentials.authorization},
            timeout=httpx.Timeout(timeout_seconds, connect=min(timeout_seconds, 10.0)),
            transport=transport,
            limits=httpx.Limits(
                max_connections=100, max_keepalive_connections=20, keepalive_expiry=KEEPALIVE
            ),
        )
        self._templates: dict[str, tuple[float, list[TemplateInfo]]] = {}

    @property
    def account(self) -> str:
        return self.credentials.account

    def sender_options(self, max_connections: int) -> SenderOptions:
        """A fan-out sender's options: this client's timeouts, ``max_connections``."""
        timeout = self._http.timeout
        return SenderOptions(
            timeout_seconds=timeout.read or 30.0,
            connect_seconds=timeout.connect or 10.0,
            max_connections=max_connections,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def post_request(self, path: str, request: Request, answers: Answers[AnswerT]) -> AnswerT:
        """``POST`` a send's body to ``path``; its answer as ``answers`` reads it."""
        try:
            response = self._http.post(path, content=request.body(), headers=JSON_HEADERS)
        except httpx.HTTPError as exc:
            nothing_sent = isinstance(exc, NOTHING_SENT)
            raise answers.unanswered(request, exc, nothing_sent=nothing_sent) from exc
        return answers.answer(request, response.status_code, response.content)

    def upload(
        self,
        path: str,
        form: dict[str, str],
        file: tuple[str, tuple[str, bytes, str]],
        read_id: Callable[[httpx.Response], str],
        error_from: ErrorReader | None = None,
    ) -> UploadedMedia:
        """``POST`` a multipart media upload (``file``: field and (name, data, type));
        the id ``read_id`` reads from the 200 answer, and the simulator instance that
        took it. ``error_from`` when the upload's errors read otherwise."""
        try:
            response = self._http.post(path, data=form, files=dict([file]))
        except httpx.HTTPError as exc:
            # An upload that may have landed costs nothing but a spare media id.
            raise LinkTransientError(f"media upload failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise (error_from or self._error_from)(response.status_code, response.content)
        return UploadedMedia(read_id(response), response.headers.get(SIMULATOR_INSTANCE_HEADER))

    def simulator_instance(self) -> str | None:
        """The running simulator's instance at this base URL (``GET /healthz``), or None:
        the provider itself, or nothing answering. Asked only about media a simulator took."""
        try:
            response = self._http.get("/healthz")
        except httpx.HTTPError:
            return None
        return response.headers.get(SIMULATOR_INSTANCE_HEADER)

    def get_json(self, path: str, what: str, params: dict[str, str] | None = None) -> Any:
        """``GET`` a JSON body; ``what`` names it in errors."""
        try:
            response = self._http.get(path, params=params)
        except httpx.HTTPError as exc:
            raise LinkTransientError(f"{what} failed: {type(exc).__name__}") from exc
        if response.status_code != 200:
            raise self._error_from(response.status_code, response.content)
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise LinkRequestError(f"unreadable {what}: not JSON", http_status=200) from exc

    def template_list(self, key: str, path: str, read_page: PageReader) -> list[TemplateInfo]:
        """Every page of the template list at ``path`` (``after`` cursors), kept
        ``TEMPLATES_KEPT_SECONDS`` under ``key`` (whom the templates belong to)."""
        now = time.monotonic()
        kept = self._templates.get(key)
        if kept is not None and kept[0] > now:
            return kept[1]
        found: list[TemplateInfo] = []
        after: str | None = None
        for _ in range(TEMPLATE_PAGES):
            body = self.get_json(path, "template list", {"after": after} if after else None)
            try:
                page, after = read_page(body)
            except ValueError as exc:
                raise LinkRequestError(f"unreadable template list: {exc}", http_status=200) from exc
            found.extend(page)
            if after is None:
                break
        self._templates[key] = (now + TEMPLATES_KEPT_SECONDS, found)
        return found


@dataclass(frozen=True, slots=True)
class Answers(Generic[AnswerT]):
    """How a provider's send answers read: ``provider`` and ``ref`` (what it calls a
    request's id) name them in errors, ``error_from`` reads an error answer, ``read``
    a 200 answer (None when unreadable; it raises itself when it reads as wrong)."""

    provider: str
    ref: str
    error_from: ErrorReader
    read: Callable[[Request, bytes], AnswerT | None]

    def answer(self, request: Request, status: int, body: bytes) -> AnswerT:
        """The answer of a send, or the error it means."""
        if status != 200:
            error = self.error_from(status, body)
            if (
                isinstance(error, LinkTransientError)
                and error.result_code is None
                and status not in NOT_PROCESSED
            ):
                # A 5xx without the provider's error body: a proxy or the provider's
                # front gave up, and the request may have been taken before it did.
                raise LinkInDoubtError(str(error), http_status=status)
            raise error
        answer = self.read(request, body)
        if answer is None:
            raise LinkInDoubtError(
                f"unreadable 200 answer to {self.ref} {request.ref_id}", http_status=200
            )
        return answer

    def unanswered(self, request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
        """No answer: nothing left our side (safe to retry), or maybe sent (in doubt)."""
        if nothing_sent:
            return LinkTransientError(f"{self.provider} unreachable: {type(exc).__name__}")
        return LinkInDoubtError(f"no answer to {self.ref} {request.ref_id}: {type(exc).__name__}")


class RequestSender(Http1Sender[Request, AnswerT]):
    """The fan-out's sender of our ``Request``s on the credentials' account, read as
    ``answers`` reads them; ``setting`` names the base URL's variable. A provider adds
    where each request goes (``head_for``)."""

    def __init__(
        self,
        credentials: Credentials,
        answers: Answers[AnswerT],
        setting: str,
        **options: Unpack[SenderOptions],
    ) -> None:
        authorization = credentials.authorization.encode()
        super().__init__(
            credentials.base_url, authorization=authorization, setting=setting, **options
        )
        self.credentials = credentials
        self._answers = answers

    def body_of(self, request: Request) -> bytes:
        return request.body()

    def answer(self, request: Request, status: int, body: bytes) -> AnswerT:
        return self._answers.answer(request, status, body)

    def unanswered(self, request: Request, exc: Exception, *, nothing_sent: bool) -> LinkError:
        return self._answers.unanswered(request, exc, nothing_sent=nothing_sent)


def json_object(content: bytes) -> dict[str, Any] | None:
    """A JSON object body, or None when the body is not one."""
    try:
        body = orjson.loads(content)
    except orjson.JSONDecodeError:
        return None
    return body if isinstance(body, dict) else None


def phrase(status: int) -> str:
    """The HTTP status's reason phrase, or "" for a status HTTP does not name."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
