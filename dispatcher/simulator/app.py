"""HTTP surface of the simulator: LINK's WhatsApp Message API endpoints, Meta's Cloud API
endpoints under ``/{version}/...`` (``meta.routes``), and ``/_simulator/*`` for tests, which
see both APIs' books."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, get_args

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
from dispatcher.simulator.config import HealthStatus, QualityRating, SimulatorConfig
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
            Route("/_simulator/stalls", stalls, methods=["GET"]),
            Route("/_simulator/callbacks", taken_callbacks, methods=["GET"]),
            Route("/_simulator/reset", reset, methods=["POST"]),
            Route("/_simulator/templates/status", template_status, methods=["POST"]),
            Route("/_simulator/sender", sender_standing, methods=["POST"]),
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
    standing = simulator.standing_of(source)
    return JSONResponse(
        phone_number_info(simulator.config, source, level, standing.health, standing.quality)
    )


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


async def stalls(request: Request) -> Response:
    """``[[unix time it ended, seconds], ...]`` of every stall of the simulator's own loop
    (``record_requests``): requests that arrived during one carry its end as their
    receipt time."""
    return JSONResponse(_simulator(request).stalls)


async def taken_callbacks(request: Request) -> Response:
    """Every callback body a receiver answered 2xx, as text (``record_requests``): what the
    receiver's raw store must hold."""
    return JSONResponse([body.decode() for body in _simulator(request).callbacks.taken])


#: Template statuses Meta's template reference names (a template to change is one of
#: these; PAUSED and DISABLED fail later sends with 132015 and 132016).
TEMPLATE_STATUSES = frozenset(
    {"APPROVED", "PAUSED", "DISABLED", "REJECTED", "PENDING", "IN_APPEAL", "PENDING_DELETION",
     "DELETED", "LIMIT_EXCEEDED"}
)  # fmt: skip
HEALTH_STATUSES = frozenset(get_args(HealthStatus))
QUALITY_RATINGS = frozenset(get_args(QualityRating))


async def template_status(request: Request) -> Response:
    """Tests and benchmarks: ``{"name", "language" (optional: every language),
    "status"}`` changes a template's status as Meta would (both APIs list it so, sends
    fail accordingly, and Meta's side sends its webhook); answers the changed entries."""
    body = await _json_object(request)
    if body is None:
        return _bad("a JSON object is required")
    name, language, status = body.get("name"), body.get("language"), body.get("status")
    if not isinstance(name, str) or not (language is None or isinstance(language, str)):
        return _bad("name (text) is required; language is text when given")
    if status not in TEMPLATE_STATUSES:
        return _bad(f"status must be one of {', '.join(sorted(TEMPLATE_STATUSES))}")
    simulator = _simulator(request)
    if not simulator.templates.names(name, language):
        return JSONResponse({"error": f"no template {name!r}"}, status_code=404)
    changed = simulator.set_template_status(name, language, status)
    return JSONResponse({"changed": changed})


async def sender_standing(request: Request) -> Response:
    """Tests and benchmarks: ``{"number" (optional: every number; E.164 or Meta's
    phone number id), "health_status", "quality_rating"}`` changes what both APIs'
    phone number information reports (Meta's side sends its webhooks too); answers
    the number's standing now."""
    body = await _json_object(request)
    if body is None:
        return _bad("a JSON object is required")
    number, health, quality = (
        body.get("number"),
        body.get("health_status"),
        body.get("quality_rating"),
    )
    if health is not None and health not in HEALTH_STATUSES:
        return _bad(f"health_status must be one of {', '.join(sorted(HEALTH_STATUSES))}")
    if quality is not None and quality not in QUALITY_RATINGS:
        return _bad(f"quality_rating must be one of {', '.join(sorted(QUALITY_RATINGS))}")
    if number is not None and not isinstance(number, str):
        return _bad("number is text: E.164 or a phone number id")
    simulator = _simulator(request)
    display = _display_number(simulator, number)
    if number is not None and display is None:
        return _bad("number: not E.164, nor a configured phone number id")
    simulator.set_sender(display, health, quality)
    standing = simulator.standing_of(display)
    return JSONResponse({"number": display, "health_status": standing.health,
                         "quality_rating": standing.quality})  # fmt: skip


def _display_number(simulator: Simulator, number: str | None) -> str | None:
    """A number as E.164: as given, or the display number of a Meta phone number id."""
    if number is None:
        return None
    configured = simulator.config.meta_phone_numbers.get(number)
    if configured is not None:
        return "+" + "".join(c for c in configured if c.isdigit())
    return "+" + number.lstrip("+") if MSISDN_RE.fullmatch(number) else None


async def _json_object(request: Request) -> dict[str, Any] | None:
    try:
        body = json.loads(await request.body())
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _bad(reason: str) -> Response:
    return JSONResponse({"error": reason}, status_code=400)


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
