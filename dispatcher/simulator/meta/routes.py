"""HTTP surface of the simulated Cloud API: the Graph paths under ``/{version}/...``.

Mounted after the LINK routes by ``create_app``. Meta's reference is the source for the
paths and answers; seeds 000 and 002 for the send answer and the webhooks.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher.simulator.codes import MEDIA_FILE_ERROR
from dispatcher.simulator.media import MediaUploadError, inspect_file
from dispatcher.simulator.meta.errors import (
    INVALID_PARAMETER,
    INVALID_TOKEN,
    MEDIA_ERROR,
    SERVER_ERROR,
    UNKNOWN_OBJECT,
    GraphError,
)
from dispatcher.simulator.meta.gateway import MetaSimulator
from dispatcher.simulator.meta.phone_numbers import phone_number_fields
from dispatcher.simulator.meta.requests import parse_send
from dispatcher.simulator.meta.statuses import BusinessNumber
from dispatcher.simulator.validation import SchemaError

_VERSION_RE = re.compile(r"v\d+\.\d+")
_PAGE_SIZE = 25  # Graph's default page size for edges
# Meta's reference: the upload takes a ``type`` (the file's MIME type) and these two parts.
_UPLOAD_TEMPORARILY_UNAVAILABLE = GraphError(
    2, 503, "Service temporarily unavailable", "The media service is temporarily unavailable."
)


def meta_routes(instance_header: str, dropped: Callable[[], Response]) -> list[Route]:
    """The Cloud API routes. ``instance_header`` names the simulator on media answers (as
    on the LINK side's); ``dropped`` makes the LINK side's answer that never ends."""

    async def send(request: Request) -> Response:
        return await send_message(request, dropped)

    async def upload(request: Request) -> Response:
        return await upload_media(request, instance_header)

    return [
        Route("/_simulator/meta/requests", recorded_sends, methods=["GET"]),
        Route("/{version}/{number_id}/messages", send, methods=["POST"]),
        Route("/{version}/{number_id}/media", upload, methods=["POST"]),
        Route("/{version}/{waba_id}/message_templates", list_templates, methods=["GET"]),
        Route("/{version}/{number_id}", phone_number, methods=["GET"]),
    ]


def _meta(request: Request) -> MetaSimulator:
    simulator: MetaSimulator = request.app.state.simulator
    return simulator


def _access(request: Request) -> tuple[MetaSimulator, Response | None]:
    """The simulator, and a refusal when the version or token is wrong."""
    simulator = _meta(request)
    if not _VERSION_RE.fullmatch(request.path_params["version"]):
        error = simulator.refuse(INVALID_PARAMETER)
        return simulator, error.response("Unknown path components: the API version is invalid.")
    if not simulator.authorized(request.headers.get("authorization")):
        return simulator, simulator.refuse(INVALID_TOKEN).response()
    return simulator, None


def _number(request: Request) -> tuple[MetaSimulator, BusinessNumber | Response]:
    simulator, refused = _access(request)
    if refused is not None:
        return simulator, refused
    number = simulator.numbers.get(request.path_params["number_id"])
    if number is None:
        return simulator, simulator.refuse(UNKNOWN_OBJECT).response()
    return simulator, number


async def send_message(request: Request, dropped: Callable[[], Response]) -> Response:
    """``POST /{version}/{phone-number-id}/messages`` (seed 000; Meta's reference)."""
    arrived = time.time()
    simulator, number = _number(request)
    if isinstance(number, Response):
        return number
    raw = await request.body()
    try:
        parsed = parse_send(json.loads(raw))
    except (ValueError, RecursionError):
        return simulator.refuse(INVALID_PARAMETER).response("The request body is not valid JSON.")
    except SchemaError as error:
        return simulator.refuse(INVALID_PARAMETER).response(f"Parameter {error}.")
    if simulator.draw_server_error():
        return simulator.refuse(SERVER_ERROR).response()
    sent = simulator.send(number, parsed)
    if isinstance(sent, GraphError):
        return sent.response()
    if simulator.config.record_requests:
        simulator.meta_recorded.append((number.id, raw))
        simulator.receipts.append((arrived, 1))
    fault = simulator.draw_fault()
    if fault == "drop":
        return dropped()
    config = simulator.config
    delay_ms = config.hang_ms if fault == "hang" else config.response_delay_ms
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)  # accepted first, answered late (as LINK's)
    return Response(simulator.answer(parsed, sent), media_type="application/json")


async def upload_media(request: Request, instance_header: str) -> Response:
    """``POST /{version}/{phone-number-id}/media``: multipart ``file``, ``type`` (its MIME
    type) and ``messaging_product`` (Meta's reference); the LINK side's type and size rules."""
    simulator, number = _number(request)
    if isinstance(number, Response):
        return number
    try:
        async with request.form() as form:
            content_type = form.get("type")
            if form.get("messaging_product") != "whatsapp":
                raise MediaUploadError(0, "Parameter messaging_product is required: whatsapp.")
            if not isinstance(content_type, str) or not content_type:
                raise MediaUploadError(0, "Parameter type is required: the file's MIME type.")
            # The LINK side reads the file from its ``media`` part; Meta's is ``file``.
            file = form.get("file")
            shim = FormData([("media", file)] if file is not None else [])
            sha256, size = await inspect_file(shim, content_type)
    except MediaUploadError as error:
        failure = MEDIA_ERROR if error.code == MEDIA_FILE_ERROR else INVALID_PARAMETER
        return simulator.refuse(failure).response(error.detail)
    except (HTTPException, MultiPartException):
        return simulator.refuse(INVALID_PARAMETER).response("The body is not multipart/form-data.")
    if simulator.upload_failure() is not None:
        return simulator.refuse(_UPLOAD_TEMPORARILY_UNAVAILABLE).response()
    media_id = simulator.record_media(number.display, content_type, sha256, size)
    return JSONResponse({"id": media_id}, headers={instance_header: simulator.instance})


async def phone_number(request: Request) -> Response:
    """``GET /{version}/{phone-number-id}?fields=...`` (Meta's phone number reference)."""
    simulator, number = _number(request)
    if isinstance(number, Response):
        return number
    fields = request.query_params.get("fields")
    wanted = [name.strip() for name in fields.split(",")] if fields else None
    return JSONResponse(phone_number_fields(simulator, number, wanted))


async def list_templates(request: Request) -> Response:
    """``GET /{version}/{waba-id}/message_templates``, paged with Graph cursors."""
    simulator, refused = _access(request)
    if refused is not None:
        return refused
    if request.path_params["waba_id"] != simulator.config.meta_waba_id:
        return simulator.refuse(UNKNOWN_OBJECT).response()
    listed = simulator.templates.listed
    try:
        limit = max(1, int(request.query_params.get("limit", _PAGE_SIZE)))
        start = _cursor_value(request.query_params.get("after"))
    except ValueError:
        return simulator.refuse(INVALID_PARAMETER).response("Invalid limit or cursor.")
    page = listed[start : start + limit]
    body: dict[str, Any] = {"data": page}
    if page:
        end = start + len(page)
        body["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(end - 1)}}
        if end < len(listed):
            query = urlencode({"limit": limit, "after": _cursor(end - 1)})
            body["paging"]["next"] = str(request.url.replace(query=query))
    return JSONResponse(body)


def _cursor(index: int) -> str:
    return urlsafe_b64encode(str(index).encode()).decode()


def _cursor_value(cursor: str | None) -> int:
    """The index after the one a cursor names; 0 without a cursor. ValueError if bad."""
    if not cursor:
        return 0
    try:
        return int(urlsafe_b64decode(cursor.encode()).decode()) + 1
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError("bad cursor") from error


async def recorded_sends(request: Request) -> Response:
    """Every accepted Cloud API send (``record_requests``): phone number id and body."""
    return JSONResponse(
        [
            {"phone_number_id": number_id, "body": json.loads(raw)}
            for number_id, raw in _meta(request).meta_recorded
        ]
    )
