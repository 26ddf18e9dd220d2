"""What a webhook body is when it arrives: readable or not, and the row that keeps it.

Every body is kept (``delivery_reports``) whatever it holds; this module decides, from
the bytes alone and without the database, which state the row starts in and what the
receiver answers: ``received`` (200, applied later) or ``invalid`` (400, kept for
inspection with the reason). The columns a report is looked up by (messageId, refId,
resultCode) are filled here once, so applying never has to search bodies.

Limits: a body over ``MAX_BODY_BYTES`` (1 MiB; a status notification is under 1 KB,
an incoming message a few KB) is kept truncated to that many bytes, marked invalid with
a note of its real size, and answered 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from dispatcher.db.models import DeliveryReport
from dispatcher.providers.link.codes import DLR_STATUS
from dispatcher.providers.link.models import DeliveryReport as Dlr
from dispatcher.providers.link.models import IncomingMessage

MAX_BODY_BYTES = 1024 * 1024
_ID_CHARS = 64  # delivery_reports.link_message_id / ref_id, messages.link_message_id
_ERROR_CHARS = 2000


class ReportState(StrEnum):
    RECEIVED = "received"  # stored, not yet applied
    APPLIED = "applied"
    UNMATCHED = "unmatched"  # no message carries its messageId (yet)
    INVALID = "invalid"  # not a report we can read; kept for inspection
    IGNORED = "ignored"  # readable, but nothing to change (e.g. an old attempt's failure)


class Kind(StrEnum):
    DLR = "dlr"  # Message Status Notification
    MO = "mo"  # incoming message


class InvalidReport(ValueError):
    """The body is not a report we can read."""


@dataclass(slots=True)
class Received:
    """A body as it will be stored: the ``delivery_reports`` row, less its id."""

    kind: str
    body: bytes
    state: ReportState
    error: str | None = None
    link_message_id: str | None = None
    ref_id: str | None = None
    result_code: int | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "body": self.body,
            "state": self.state.value,
            "error": self.error,
            "link_message_id": self.link_message_id,
            "ref_id": self.ref_id,
            "result_code": self.result_code,
            "received_at": self.received_at,
        }

    def bare_row(self, note: str) -> dict[str, Any]:
        """Only the body, for when the derived columns themselves cannot be stored."""
        return Received(self.kind, self.body, ReportState.INVALID, _clean(note)).row()


def read_body(kind: Kind | str, body: bytes, *, size: int | None = None) -> Received:
    """Judge a body; ``size`` is its real length when ``body`` had to be truncated."""
    if size is not None and size > len(body):
        note = (
            f"body of {size} bytes is over the {MAX_BODY_BYTES}-byte limit; "
            f"stored truncated to its first {len(body)} bytes"
        )
        return Received(kind, body, ReportState.INVALID, note)
    try:
        if kind == Kind.DLR:
            dlr = parse_dlr(body)
            return Received(
                kind,
                body,
                ReportState.RECEIVED,
                link_message_id=dlr.message_id,
                ref_id=dlr.ref_id,
                result_code=dlr.result_code,
            )
        parse_incoming(body)
        return Received(kind, body, ReportState.RECEIVED)
    except InvalidReport as exc:
        return Received(kind, body, ReportState.INVALID, _clean(str(exc)))
    except Exception as exc:  # a body that trips a bug is still bad input: 400, kept
        return Received(kind, body, ReportState.INVALID, f"unreadable ({type(exc).__name__})")


def parse_dlr(body: bytes) -> Dlr:
    """The status notification in a callback body, or ``InvalidReport`` saying why not.

    Required (seed 004 'Message Status Notifications'): a documented ``resultCode``, and
    the ``messageId`` it is about, or the ``refId`` of a failed request ("request" /
    index -1, where no message was sent).
    """
    try:
        dlr = Dlr.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(_first_error(exc)) from None
    if dlr.result_code not in DLR_STATUS:
        raise InvalidReport(f"resultCode: {dlr.result_code} is not a documented status code")
    if dlr.is_request_failure:
        if not dlr.ref_id:
            raise InvalidReport("refId: a failed request's report must name its request")
    elif not dlr.message_id:
        raise InvalidReport("messageId: required in a message's status notification")
    for name, value in (("messageId", dlr.message_id), ("refId", dlr.ref_id)):
        if value is not None and len(value) > _ID_CHARS:
            raise InvalidReport(f"{name}: longer than {_ID_CHARS} characters")
        if value is not None and not value.isprintable():
            raise InvalidReport(f"{name}: holds control characters")
    return dlr


def parse_dlrs(body: bytes) -> list[Dlr]:
    """The report in a callback body: one object per callback (seed 004, "One callback
    relates to one message"), so one stored body has exactly one state."""
    return [parse_dlr(body)]


def parse_incoming(body: bytes) -> IncomingMessage:
    try:
        return IncomingMessage.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidReport(f"not an incoming message: {_first_error(exc)}") from None


def store(session: Session, kind: str, body: bytes) -> int:
    """Keep a webhook body exactly as received; returns its id."""
    row = read_body(kind, body).row()
    return int(
        session.scalars(insert(DeliveryReport).values(**row).returning(DeliveryReport.id)).one()
    )


def mark_invalid(session: Session, report_id: int, error: str) -> None:
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(state=ReportState.INVALID, error=_clean(error))
    )


def _first_error(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in first["loc"]) or "(body)"
    return f"{where}: {first['msg']}"


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; the reason may quote what it could not read.
    return text.replace("\x00", "\\0")[:_ERROR_CHARS]
