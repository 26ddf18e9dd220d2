"""The REST API under ``/api`` of the internal listener: what batch jobs call.

Every route asks for an API key (``auth.require``: a bearer token, or the console's
session with its CSRF token), does its work through ``actions`` (as the CLI and the
console do, so nothing here skips validation, pre-flight, the repeat guard or the drop
folder's atomic take) in a worker thread, and writes one line of the audit trail: who,
what, on what, answered how. Answers other than success are
``{"error": "...", "detail": ...}`` with the status the OpenAPI document
(``/api/openapi.json``, ``openapi.py``) lists: 400 a malformed request, 401 no or a
bad key, 403 a read key asking to change something, 404 no such campaign or
schedule, 409 the campaign's state does not allow it (or it repeats a recent one),
413 an upload over ``actions.MAX_UPLOAD_BYTES``, 422 content that is not valid
(``detail.problems``: the field paths of ``dispatcher validate``), 503 the broker or
database cannot take it now.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping
from pathlib import PurePosixPath
from typing import Any, BinaryIO, TypeVar, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Message

from dispatcher.campaigns.spec import SPEC_NAMES
from dispatcher.errors import DispatcherError, StorageError
from dispatcher.interfaces import actions
from dispatcher.interfaces.web import auth, openapi
from dispatcher.interfaces.webhooks import MAX_ID
from dispatcher.operations.access import Caller, Scope

#: A JSON body's size at most (a suppression call of ``actions.MAX_IDENTIFIERS``).
MAX_JSON_BYTES = 1024 * 1024
#: Room for the multipart framing around ``actions.MAX_UPLOAD_BYTES`` of files.
_FRAMING_BYTES = 1024 * 1024
#: A report is kept in memory up to this size, then on disk, and sent in chunks.
_SPOOL_BYTES = 8 * 1024 * 1024
_CHUNK_BYTES = 256 * 1024

Handler = Callable[[Request, Caller], Awaitable[Response]]
_M = TypeVar("_M", bound=BaseModel)


# -- request bodies and queries ----------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class Page(_Strict):
    limit: int = Field(default=20, ge=1, le=actions.MAX_LIST)
    offset: int = Field(default=0, ge=0, le=2**31)


class SubmitQuery(_Strict):
    dry_run: bool = Field(
        default=False, description="prepare without sending: the preview and its forecast"
    )
    again: bool = Field(
        default=False, description="send although the same files were sent recently"
    )


class StartQuery(_Strict):
    again: bool = False


class SuppressionsAdd(_Strict):
    identifiers: list[str] = Field(
        min_length=1,
        max_length=actions.MAX_IDENTIFIERS,
        description="phone numbers (E.164, or national with region) or BSUIDs",
    )
    reason: str = Field(default="opted out", min_length=1, max_length=200)
    region: str | None = Field(
        default=None, pattern=r"^[A-Za-z]{2}$", description="ISO country of national numbers"
    )


class SuppressionsRemove(_Strict):
    identifiers: list[str] = Field(min_length=1, max_length=actions.MAX_IDENTIFIERS)
    region: str | None = Field(default=None, pattern=r"^[A-Za-z]{2}$")


class SuppressionsQuery(Page):
    limit: int = Field(default=100, ge=1, le=10_000)


class ScheduleFields(_Strict):
    cron: str = Field(min_length=1, max_length=120, description='e.g. "0 9 * * MON"')
    timezone: str = Field(default="UTC", min_length=1, max_length=64)


# -- the routes --------------------------------------------------------------------------


def routes() -> list[BaseRoute]:
    """The API's routes, relative to its mount point (``/api``)."""
    campaign = "/campaigns/{campaign_id}"
    return [
        Route("/openapi.json", _openapi, methods=["GET"]),
        Route("/campaigns", _api("campaigns.list", Scope.READ, _list), methods=["GET"]),
        Route("/campaigns", _api("campaigns.submit", Scope.SEND, _submit), methods=["POST"]),
        Route(campaign, _api("campaigns.status", Scope.READ, _status), methods=["GET"]),
        Route(f"{campaign}/start", _api("campaigns.start", Scope.SEND, _start), methods=["POST"]),
        Route(f"{campaign}/pause", _api("campaigns.pause", Scope.SEND, _pause), methods=["POST"]),
        Route(
            f"{campaign}/resume", _api("campaigns.resume", Scope.SEND, _resume), methods=["POST"]
        ),
        Route(
            f"{campaign}/cancel", _api("campaigns.cancel", Scope.SEND, _cancel), methods=["POST"]
        ),
        Route(
            f"{campaign}/report.csv", _api("campaigns.report", Scope.READ, _report), methods=["GET"]
        ),
        Route(
            f"{campaign}/rejects.csv",
            _api("campaigns.rejects", Scope.READ, _rejects),
            methods=["GET"],
        ),
        Route(
            "/suppressions", _api("suppressions.list", Scope.READ, _suppressions), methods=["GET"]
        ),
        Route("/suppressions", _api("suppressions.add", Scope.SEND, _suppress), methods=["POST"]),
        Route(
            "/suppressions",
            _api("suppressions.remove", Scope.SEND, _unsuppress),
            methods=["DELETE"],
        ),
        Route("/schedules", _api("schedules.list", Scope.READ, _schedules), methods=["GET"]),
        Route("/schedules", _api("schedules.add", Scope.SEND, _add_schedule), methods=["POST"]),
        Route(
            "/schedules/{schedule_id}",
            _api("schedules.show", Scope.READ, _schedule),
            methods=["GET"],
        ),
        Route(
            "/schedules/{schedule_id}",
            _api("schedules.remove", Scope.SEND, _remove_schedule),
            methods=["DELETE"],
        ),
    ]


async def _openapi(_: Request) -> Response:
    """The API's description (open: it holds no data)."""
    return JSONResponse(openapi.document())


def _api(action: str, scope: Scope, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """``handler`` behind ``auth.require(scope)``, its refusals as the documented JSON
    errors, and every call in the audit trail (a refused key's too)."""

    async def endpoint(request: Request) -> Response:
        who: Caller | None = None
        target = _target(request)
        try:
            who = await auth.require(request, scope)
            response = await handler(request, who)
        except auth.ApiError as exc:
            if exc.status != 429:  # a stranger past its limit is not written down
                await auth.audited(request, who or await auth.caller(request), action,
                                   target, exc.status, {"error": exc.error})  # fmt: skip
            raise
        except DispatcherError as exc:
            response = _refusal(exc)
        except Exception as exc:  # a bug: in the trail too, then the server's 500
            await auth.audited(request, who, action, target, 500, {"error": type(exc).__name__})
            raise
        detail = getattr(response, "audit_detail", None)
        if response.status_code >= 400:
            detail = {"error": json.loads(bytes(response.body)).get("error")}
        await auth.audited(request, who, action, target, response.status_code, detail)
        return response

    endpoint.__name__ = action.replace(".", "_")
    return endpoint


def _target(request: Request) -> str | None:
    params = request.path_params
    if "campaign_id" in params:
        return f"campaign:{params['campaign_id']}"[:200]
    if "schedule_id" in params:
        return f"schedule:{params['schedule_id']}"[:200]
    return None


def error(status: int, message: str, detail: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def _refusal(exc: DispatcherError) -> JSONResponse:
    """A ``DispatcherError`` as the status its kind stands for (``actions``)."""
    if isinstance(exc, actions.Invalid):
        return error(422, str(exc), {"problems": exc.problems})
    status = {
        actions.NotFound: 404,
        actions.Conflict: 409,
        actions.TooLarge: 413,
        actions.Unavailable: 503,
        StorageError: 503,
    }.get(type(exc), 400)
    return error(status, str(exc))


class _BadRequest(DispatcherError):
    """The request itself is malformed (400)."""


def _id(request: Request, name: str) -> int:
    """A path id; a non-number is a bad request, one beyond any id is not found."""
    raw = request.path_params[name]
    if not raw.isdigit():
        raise _BadRequest(f"{name} must be a whole number, got {raw[:40]!r}")
    value = int(raw)
    if value > MAX_ID:
        kind = name.removesuffix("_id")
        raise actions.NotFound(f"no {kind} {raw[:40]}")
    return value


def _validated(model: type[_M], data: Mapping[str, Any]) -> _M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        problems = [
            {"field": ".".join(str(p) for p in e["loc"]) or "(body)", "message": e["msg"]}
            for e in exc.errors(include_url=False)
        ]
        raise actions.Invalid("the request is not valid", problems) from None


def _query(model: type[_M], request: Request) -> _M:
    return _validated(model, dict(request.query_params))


async def _body(request: Request, limit: int) -> bytes:
    """The request's body, refused (``TooLarge``) past ``limit`` bytes, announced or
    sent."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise actions.TooLarge(f"the request is over {limit // (1024 * 1024)} MiB")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise actions.TooLarge(f"the request is over {limit // (1024 * 1024)} MiB")
            chunks.append(chunk)
    except RuntimeError:  # read already: a session's CSRF token looked for in the form
        raise _BadRequest("send the session's CSRF token as the X-CSRF-Token header") from None
    return b"".join(chunks)


async def _json(request: Request) -> Any:
    body = await _body(request, MAX_JSON_BYTES)
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _BadRequest("the body is not JSON") from None


async def _object(request: Request) -> Mapping[str, Any]:
    found = await _json(request)
    if not isinstance(found, dict):
        raise actions.Invalid(
            "the request is not valid", [{"field": "(body)", "message": "a JSON object"}]
        )
    return found


async def _uploaded(request: Request) -> tuple[dict[str, bytes], dict[str, str]]:
    """The files of a multipart body (by name; the ``spec`` field's file called
    ``campaign.yaml``/``.toml`` whatever its name) and its plain fields; or a zip sent
    as the body itself (``application/zip``)."""
    body = await _body(request, actions.MAX_UPLOAD_BYTES + _FRAMING_BYTES)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in ("application/zip", "application/x-zip-compressed"):
        return {"upload.zip": body}, {}
    if kind != "multipart/form-data":
        raise _BadRequest("send multipart/form-data (files), or one zip as application/zip")
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    again = Request(request.scope, replay)
    try:
        form = await again.form(
            max_files=actions.MAX_UPLOAD_FILES,
            max_fields=50,
            max_part_size=actions.MAX_UPLOAD_BYTES,
        )
    except (MultiPartException, HTTPException) as exc:
        raise _BadRequest(f"bad multipart body: {getattr(exc, 'detail', exc)}") from None
    files: dict[str, bytes] = {}
    fields: dict[str, str] = {}
    try:
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                name = value.filename or key
                if key == "spec" and name not in SPEC_NAMES:
                    suffix = PurePosixPath(name).suffix.lower()
                    name = "campaign.toml" if suffix == ".toml" else "campaign.yaml"
                if name in files:
                    raise actions.Invalid(
                        "the request is not valid",
                        [{"field": key, "message": f"{name!r} sent twice"}],
                    )
                files[name] = await value.read()
            else:
                fields[key] = value
    finally:
        await form.close()
    return files, fields


# -- campaigns ---------------------------------------------------------------------------


async def _list(request: Request, _: Caller) -> Response:
    page = _query(Page, request)
    web = auth.context(request)
    found = await run_in_threadpool(
        actions.campaigns,
        web.db,
        page.limit,
        page.offset,
        settings=web.settings,
        settled=web.settled,
    )
    return JSONResponse({"campaigns": found, "limit": page.limit, "offset": page.offset})


async def _submit(request: Request, _: Caller) -> Response:
    query = _query(SubmitQuery, request)
    files, fields = await _uploaded(request)
    if fields:
        raise actions.Invalid(
            "the request is not valid",
            [{"field": name, "message": "not a file: send files only"} for name in fields],
        )
    web = auth.context(request)
    found = await run_in_threadpool(
        _submit_files, web, files, dry_run=query.dry_run, again=query.again
    )
    return _submitted(found)


def _submit_files(
    web: auth.WebContext, files: dict[str, bytes], *, dry_run: bool, again: bool
) -> actions.Submitted:
    return actions.submit(web.db, files, dry_run=dry_run, again=again, settings=web.settings)


def _submitted(found: actions.Submitted) -> Response:
    if found.problems or found.campaign_id is None:
        return error(422, "the campaign is not valid", {"problems": found.problems})
    response = JSONResponse(found.as_dict(), status_code=201)
    response.headers["location"] = f"/api/campaigns/{found.campaign_id}"
    response.audit_detail = {"campaign_id": found.campaign_id, "state": found.state}  # type: ignore[attr-defined]
    return response


async def _status(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    web = auth.context(request)
    found = await run_in_threadpool(
        actions.status_document, web.db, campaign_id, settings=web.settings
    )
    if found is None:
        raise actions.NotFound(f"no campaign {campaign_id}")
    return JSONResponse(found)


async def _start(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    query = _query(StartQuery, request)
    web = auth.context(request)
    found = await run_in_threadpool(
        actions.start, web.db, campaign_id, again=query.again, settings=web.settings
    )
    return _submitted(found)


async def _pause(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    await run_in_threadpool(actions.pause, auth.context(request).db, campaign_id)
    return JSONResponse({"campaign_id": campaign_id, "state": "paused"})


async def _resume(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    web = auth.context(request)
    found = await run_in_threadpool(actions.resume, web.db, campaign_id, settings=web.settings)
    return JSONResponse(found.as_dict())


async def _cancel(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    never = await run_in_threadpool(actions.cancel, auth.context(request).db, campaign_id)
    return JSONResponse({"campaign_id": campaign_id, "state": "cancelled", "never_sent": never})


async def _report(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    db = auth.context(request).db
    spool = await run_in_threadpool(_spooled, lambda h: actions.write_report(db, campaign_id, h))
    return _csv(spool, f"campaign-{campaign_id}-report.csv")


async def _rejects(request: Request, _: Caller) -> Response:
    campaign_id = _id(request, "campaign_id")
    db = auth.context(request).db
    written: list[bool] = []
    spool = await run_in_threadpool(
        _spooled, lambda h: written.append(actions.write_rejects(db, campaign_id, h))
    )
    if not written[0]:
        spool.close()
        raise actions.NotFound(
            f"campaign {campaign_id} has no rejects report yet: it is written when preparation ends"
        )
    return _csv(spool, f"campaign-{campaign_id}-rejects.csv")


def _spooled(write: Callable[[BinaryIO], object]) -> BinaryIO:
    """What ``write`` writes, in memory up to ``_SPOOL_BYTES`` and on disk past that: a
    million people's report is not held in memory."""
    # SIM115: the file outlives this function (``_csv`` streams, then closes it).
    spool = cast(BinaryIO, tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES))  # noqa: SIM115
    try:
        write(spool)
        spool.seek(0)
    except BaseException:
        spool.close()
        raise
    return spool


def _csv(spool: BinaryIO, name: str) -> Response:
    size = spool.seek(0, 2)
    spool.seek(0)

    def chunks() -> Iterator[bytes]:
        try:
            while chunk := spool.read(_CHUNK_BYTES):
                yield chunk
        finally:
            spool.close()

    return StreamingResponse(
        chunks(),
        media_type="text/csv; charset=utf-8",
        headers={
            "content-disposition": f'attachment; filename="{name}"',
            "content-length": str(size),
        },
    )


# -- suppressions ------------------------------------------------------------------------


async def _suppressions(request: Request, _: Caller) -> Response:
    page = _query(SuppressionsQuery, request)
    found = await run_in_threadpool(
        _suppression_page, auth.context(request), page.limit, page.offset
    )
    return JSONResponse({"suppressions": found, "limit": page.limit, "offset": page.offset})


def _suppression_page(web: auth.WebContext, limit: int, offset: int) -> list[dict[str, str]]:
    return actions.suppressions(web.db, limit=limit, offset=offset)


async def _suppress(request: Request, _: Caller) -> Response:
    body = _validated(SuppressionsAdd, await _object(request))
    found = await run_in_threadpool(_add, auth.context(request), body)
    return JSONResponse(found)


def _add(web: auth.WebContext, body: SuppressionsAdd) -> dict[str, Any]:
    return actions.suppress(web.db, body.identifiers, reason=body.reason, region=body.region)


async def _unsuppress(request: Request, _: Caller) -> Response:
    body = _validated(SuppressionsRemove, await _object(request))
    found = await run_in_threadpool(_remove, auth.context(request), body)
    return JSONResponse(found)


def _remove(web: auth.WebContext, body: SuppressionsRemove) -> dict[str, Any]:
    return actions.unsuppress(web.db, body.identifiers, region=body.region)


# -- schedules ---------------------------------------------------------------------------


async def _schedules(request: Request, _: Caller) -> Response:
    found = await run_in_threadpool(actions.schedules, auth.context(request).db)
    return JSONResponse({"schedules": found})


async def _schedule(request: Request, _: Caller) -> Response:
    schedule_id = _id(request, "schedule_id")
    found = await run_in_threadpool(actions.schedule, auth.context(request).db, schedule_id)
    return JSONResponse(found)


async def _add_schedule(request: Request, _: Caller) -> Response:
    files, fields = await _uploaded(request)
    plan = _validated(ScheduleFields, fields)
    web = auth.context(request)
    found = await run_in_threadpool(_scheduled, web, files, plan)
    response = JSONResponse(found, status_code=201)
    response.headers["location"] = f"/api/schedules/{found['id']}"
    return response


def _scheduled(web: auth.WebContext, files: dict[str, bytes], plan: ScheduleFields) -> Any:
    return actions.add_schedule(web.db, files, plan.cron, plan.timezone, settings=web.settings)


async def _remove_schedule(request: Request, _: Caller) -> Response:
    schedule_id = _id(request, "schedule_id")
    web = auth.context(request)
    await run_in_threadpool(_unschedule, web, schedule_id)
    return JSONResponse({"removed": schedule_id})


def _unschedule(web: auth.WebContext, schedule_id: int) -> None:
    actions.remove_schedule(web.db, schedule_id, settings=web.settings)
