"""Webhook app (ASGI): LINK delivery reports and incoming messages, health, status.

Every body is committed to ``delivery_reports`` before it is answered: 200 once
stored (applying may be retried later by the sweep), 400 for a body we cannot read
(stored all the same), 503 when the database cannot take it (LINK retries), never a
500 for bad input.

Callers authenticate with the shared secret ``WEBHOOK_TOKEN``, presented as the
``X-Webhook-Token`` header, a ``token`` query parameter (for gates that only take a
URL), or the password of HTTP basic auth. Unset = open (the embedded default sets one).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import text
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dispatcher import progress, tracking
from dispatcher.db import Database
from dispatcher.errors import StorageError

log = logging.getLogger(__name__)
MAX_BODY_BYTES = 1024 * 1024


def create_app(db: Database, *, token: str | None = None) -> Starlette:
    """The webhook ASGI app over ``db``; ``token`` is the shared secret (None = open)."""
    receiver = _Receiver(db, token)
    return Starlette(
        routes=[
            Route("/webhooks/link/dlr", receiver.dlr, methods=["POST"]),
            Route("/webhooks/link/mo", receiver.mo, methods=["POST"]),
            Route("/healthz", receiver.healthz, methods=["GET"]),
            Route("/campaigns/{campaign_id}", receiver.campaign_status, methods=["GET"]),
        ]
    )


class _Receiver:
    def __init__(self, db: Database, token: str | None) -> None:
        self.db = db
        self.token = token

    def authorised(self, request: Request) -> bool:
        if self.token is None:
            return True
        offered = request.headers.get("x-webhook-token") or request.query_params.get("token")
        if offered is None:
            offered = _basic_password(request.headers.get("authorization"))
        return offered is not None and hmac.compare_digest(offered.encode(), self.token.encode())

    async def receive(
        self, request: Request, kind: str, handle: Callable[[int, bytes], Any]
    ) -> Response:
        if not self.authorised(request):
            return JSONResponse({"error": "unauthorised"}, status_code=401)
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        body = await request.body()
        if len(body) > MAX_BODY_BYTES:
            return JSONResponse({"error": f"body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        try:
            report_id = await run_in_threadpool(_store, self.db, kind, body)
        except StorageError as exc:
            log.error("cannot store a %s callback: %s", kind, exc)
            return JSONResponse({"error": "storage unavailable, retry"}, status_code=503)
        try:
            await run_in_threadpool(handle, report_id, body)
        except tracking.InvalidReport as exc:
            await run_in_threadpool(_mark_invalid, self.db, report_id, str(exc))
            return JSONResponse({"error": str(exc), "stored": report_id}, status_code=400)
        except StorageError as exc:
            # Stored but not applied: the sweep applies it later. The body is safe.
            log.warning("report %s stored, apply deferred: %s", report_id, exc)
        except Exception:  # the body is stored; a failed apply must not make LINK resend
            log.exception("report %s stored, apply failed; the sweep retries it", report_id)
        return JSONResponse({"stored": report_id})

    def handle_dlr(self, report_id: int, body: bytes) -> None:
        dlrs = tracking.parse_dlrs(body)
        with self.db.session() as session:
            for dlr in dlrs:
                tracking.apply_dlr(session, report_id, dlr)

    def handle_mo(self, report_id: int, body: bytes) -> None:
        message = tracking.parse_incoming(body)
        with self.db.session() as session:
            tracking.apply_incoming(session, report_id, message)

    async def dlr(self, request: Request) -> Response:
        return await self.receive(request, "dlr", self.handle_dlr)

    async def mo(self, request: Request) -> Response:
        return await self.receive(request, "mo", self.handle_mo)

    async def healthz(self, _: Request) -> Response:
        try:
            await run_in_threadpool(_ping, self.db)
        except StorageError as exc:
            return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok"})

    async def campaign_status(self, request: Request) -> Response:
        try:
            campaign_id = int(request.path_params["campaign_id"])
        except ValueError:
            return JSONResponse({"error": "campaign id must be a number"}, status_code=400)
        found = await run_in_threadpool(_progress, self.db, campaign_id)
        if found is None:
            return JSONResponse({"error": "no such campaign"}, status_code=404)
        return JSONResponse(found)


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(header[6:], validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[2] or None


def _store(db: Database, kind: str, body: bytes) -> int:
    with db.session() as session:
        return tracking.store(session, kind, body)


def _mark_invalid(db: Database, report_id: int, error: str) -> None:
    try:
        with db.session() as session:
            tracking.mark_invalid(session, report_id, error)
    except StorageError as exc:
        log.warning("report %s: could not mark invalid: %s", report_id, exc)


def _ping(db: Database) -> None:
    with db.session() as session:
        session.execute(text("SELECT 1"))


def _progress(db: Database, campaign_id: int) -> dict[str, Any] | None:
    with db.session() as session:
        found = progress.progress(session, campaign_id)
    return found.as_dict() if found else None
