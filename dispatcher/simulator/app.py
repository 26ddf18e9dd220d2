"""HTTP surface of the simulator: LINK's WhatsApp Message API endpoints, Meta's Cloud API
endpoints under ``/{version}/...`` (``meta.routes``), and ``/_simulator/*`` for tests, which
see both APIs' books."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dispatcher.simulator.codes import (
    BAD_REQUEST,
    INVALID_PAYLOAD,
    NO_ACCESS,
    SERVER_ERROR,
    VALIDATION_ERROR,
    error_response,
    media_error_response,
)
from dispatcher.simulator.config import SimulatorConfig
from dispatcher.simulator.core import Simulator
from dispatcher.simulator.identity import MSISDN_RE
from dispatcher.simulator.media import MediaUploadError, inspect_file, required_fields
from dispatcher.simulator.meta import MetaSimulator, meta_routes
from dispatcher.simulator.phone_info import phone_number_info
from dispatcher.simulator.validation import SchemaError, parse_message_request

#: Which running simulator answered (on ``/healthz`` and media uploads): its media ids
#: die with it. The client reads it under the same name; the simulator imports nothing
#: of the client's.
SIMULATOR_INSTANCE_HEADER = "X-Simulator-Instance"
_PLATFORM_REFUSED = "platformId or platformPartnerId is not allowed for this user"
_SOURCE_PATH = "/platformId/{platform_id}/platformPartnerId/{platform_partner_id}/source/{source}"


def create_app(config: SimulatorConfig | None = None) -> Starlette:
    """A Starlette app simulating the LINK WhatsApp Message API and Meta's Cloud API;
    serve it with uvicorn."""
    simulator = MetaSimulator(config or SimulatorConfig())

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        simulator.start()
        try:
            yield
        finally:
            await simulator.stop()

    app = Starlette(
        routes=[
            Route("/messages", send_messages, methods=["POST"]),
            Route("/media", upload_media, methods=["POST"]),
            Route(_SOURCE_PATH, phone_info, methods=["GET"]),
            Route(f"{_SOURCE_PATH}/templates", list_templates, methods=["GET"]),
            Route(f"{_SOURCE_PATH}/templates/{{template_id}}", get_template, methods=["GET"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/_simulator/stats", stats, methods=["GET"]),
            Route("/_simulator/requests", recorded_requests, methods=["GET"]),
            Route("/_simulator/receipts", receipts, methods=["GET"]),
            Route("/_simulator/callbacks", taken_callbacks, methods=["GET"]),
            Route("/_simulator/reset", reset, methods=["POST"]),
            # Last: their ``/{version}/{id}`` patterns would shadow the paths above.
            *meta_routes(SIMULATOR_INSTANCE_HEADER, _Dropped),
        ],
        lifespan=lifespan,
    )
    app.state.simulator = simulator
    return app


def _instance(request: Request) -> dict[str, str]:
    """Which simulator answered: its media ids die with it, so a client keys its media
    cache by this (real LINK sends no such header)."""
    return {SIMULATOR_INSTANCE_HEADER: _simulator(request).instance}


def _simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


async def send_messages(request: Request) -> Response:
    """Seed 'POST /messages'."""
    arrived = time.time()  # before the body is read and parsed: when it reached us
    simulator = _simulator(request)
    code = simulator.auth.check(request.headers.get("authorization"))
    if code is not None:
        return _refuse(simulator, code)
    raw = await request.body()
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return _refuse(simulator, INVALID_PAYLOAD, "request body is not valid JSON")
    try:
        parsed = parse_message_request(body)
    except SchemaError as error:
        return _refuse(simulator, VALIDATION_ERROR, str(error))
    except RecursionError:
        return _refuse(simulator, VALIDATION_ERROR, "request is nested too deeply")
    if not simulator.allows(parsed.platform_id, parsed.platform_partner_id):
        return _refuse(simulator, NO_ACCESS, _PLATFORM_REFUSED)
    if simulator.draw_server_error():
        return _refuse(simulator, SERVER_ERROR)
    message_ids = simulator.accept(parsed)
    if simulator.config.record_requests:
        simulator.recorded.append(raw)  # one object, not a tree of them: see core
        simulator.receipts.append((arrived, len(parsed.destinations) * len(parsed.messages)))
    fault = simulator.draw_fault()
    if fault == "drop":
        return _Dropped()
    delay_ms = simulator.config.hang_ms if fault == "hang" else simulator.config.response_delay_ms
    if delay_ms:
        # Accepted first, answered late: what a client sees when its read timeout fires after
        # LINK already queued the messages.
        await asyncio.sleep(delay_ms / 1000)
    ids = '","'.join(message_ids)
    return Response(
        f'{{"resultCode":112001,"description":"queued","messageIds":["{ids}"]}}',
        media_type="application/json",
    )


async def upload_media(request: Request) -> Response:
    """Seed 'Upload Media' > 'Normal media'."""
    simulator = _simulator(request)
    code = simulator.auth.check(request.headers.get("authorization"))
    if code is not None:
        return media_error_response(code)
    try:
        async with request.form() as form:
            fields = required_fields(form)
            if not simulator.allows(fields["platformId"], fields["platformPartnerId"]):
                return media_error_response(NO_ACCESS, _PLATFORM_REFUSED)
            content_type = fields["mediaContentType"]
            sha256, size = await inspect_file(form, content_type)
    except MediaUploadError as error:
        return media_error_response(error.code, error.detail)
    except (HTTPException, MultiPartException):
        return media_error_response(BAD_REQUEST, "request is not valid multipart/form-data")
    failure = simulator.upload_failure()
    if failure is not None:
        return media_error_response(failure)
    media_id = simulator.record_media(fields["source"], content_type, sha256, size)
    return PlainTextResponse(media_id, headers=_instance(request))


async def phone_info(request: Request) -> Response:
    """Seed 'Phone number information API'."""
    refused = _source_access(request)
    if refused is not None:
        return refused
    simulator = _simulator(request)
    source = request.path_params["source"]
    level = simulator.level_of(source)
    return JSONResponse(phone_number_info(simulator.config, source, level))


def _source_access(request: Request) -> Response | None:
    """The refusal of a request under a source's path (phone number information and the
    template endpoints), or None: credentials, platform ids, then the source itself."""
    simulator = _simulator(request)
    code = simulator.auth.check(request.headers.get("authorization"))
    if code is not None:
        return error_response(code)
    params = request.path_params
    if not simulator.allows(params["platform_id"], params["platform_partner_id"]):
        return error_response(NO_ACCESS, _PLATFORM_REFUSED)
    if not MSISDN_RE.fullmatch(params["source"]):
        return error_response(BAD_REQUEST, "source must be an MSISDN")
    return None


async def list_templates(request: Request) -> Response:
    """Seed 004 'List Templates', in Meta's format (one page, no cursor)."""
    refused = _source_access(request)
    if refused is not None:
        return refused
    return JSONResponse({"data": _simulator(request).templates.listed})


async def get_template(request: Request) -> Response:
    """Seed 004 'Get Template' by its id."""
    refused = _source_access(request)
    if refused is not None:
        return refused
    found = _simulator(request).templates.by_id(request.path_params["template_id"])
    if found is None:
        return error_response(BAD_REQUEST, "no template with this id")
    return JSONResponse(found)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers=_instance(request))


async def stats(request: Request) -> Response:
    """Test and benchmark counters; deliberately unauthenticated."""
    return JSONResponse(_simulator(request).stats())


async def recorded_requests(request: Request) -> Response:
    """Every accepted MessageRequest body, when ``record_requests`` is on."""
    return JSONResponse([json.loads(raw) for raw in _simulator(request).recorded])


async def receipts(request: Request) -> Response:
    """``[[unix time, messages], ...]`` of every accepted request (``record_requests``):
    the receipt log a throughput benchmark reads its sliding windows from."""
    return JSONResponse(_simulator(request).receipts)


async def taken_callbacks(request: Request) -> Response:
    """Every callback body a receiver answered 2xx, as text (``record_requests``): what the
    receiver's raw store must hold."""
    return JSONResponse([body.decode() for body in _simulator(request).callbacks.taken])


async def reset(request: Request) -> Response:
    _simulator(request).reset()
    return JSONResponse({"status": "reset"})


class _Dropped(Response):
    """Headers promising a body that never comes: the server closes the connection, and
    the client cannot know whether the request was taken (it was)."""

    def __init__(self) -> None:
        super().__init__(status_code=200)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"64")],
            }
        )
        await send({"type": "http.response.body", "body": b'{"resultCode":1120', "more_body": True})


def _refuse(simulator: Simulator, code: int, detail: str | None = None) -> Response:
    simulator.reject(code)
    return error_response(code, detail)
