"""What a webhook body is when it arrives: readable or not, and the row that keeps it.

Every body is kept (``delivery_reports``) whatever it holds; this module decides, from
the bytes alone and without the database, which state the row starts in and what the
receiver answers: ``received`` (200, applied later), ``ignored`` (200: readable, with
nothing to apply, such as a Meta status of no tracked state) or ``invalid`` (400, kept
for inspection with the reason; Meta's are answered 200, ``interfaces.webhooks``). Its
provider reads the body (``providers.parse_callback``, by the kind of callback); the
columns a status report is looked up by (message id, request id, result code) are
filled here once, so applying never has to search bodies.
A result code the provider does not document is no reason to refuse a body: it is
stored, answered 200 and applied as a failure with that code (``codes.dlr_status``),
so no message waits for a report that was already answered 400.

Limits: a body over ``MAX_BODY_BYTES`` (1 MiB; a status notification is under 1 KB,
an incoming message a few KB) is kept truncated to that many bytes, marked invalid with
a note of its real size, and answered 400.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from dispatcher.db.bulk import among
from dispatcher.db.models import DeliveryReport
from dispatcher.providers import InvalidReport, parse_callback

__all__ = [
    "MAX_BODY_BYTES",
    "STATUS_KINDS",
    "InvalidReport",
    "Kind",
    "Received",
    "ReportState",
    "mark_invalid",
    "read_body",
    "settle",
]

MAX_BODY_BYTES = 1024 * 1024
_ERROR_CHARS = 2000


class ReportState(StrEnum):
    RECEIVED = "received"  # stored, not yet applied
    APPLIED = "applied"
    UNMATCHED = "unmatched"  # no message carries its messageId (yet)
    INVALID = "invalid"  # not a report we can read; kept for inspection
    IGNORED = "ignored"  # readable, but nothing to change (e.g. an old attempt's failure)


class Kind(StrEnum):
    """The kinds of callback stored (``providers.WEBHOOKS``)."""

    DLR = "dlr"  # status report (LINK: Message Status Notification)
    MO = "mo"  # incoming message
    META = "meta"  # Meta's webhook: statuses, incoming messages and more in one body


#: The kinds whose bodies may hold status reports (a batch's early reports wait in them).
STATUS_KINDS = (Kind.DLR, Kind.META)


#: What in a stored body makes a guardrail pause a campaign (``tracking.sender_events``):
#: a template paused or disabled (Meta's 132015/132016, in LINK's reports as "(#132015)")
#: and Meta's webhooks about the sender. Such a body is applied at once, not after the
#: applier's linger: the pause is due within one slice of the report.
_URGENT = (
    b"132015",
    b"132016",
    b"message_template_status_update",
    b"phone_number_quality_update",
    b"account_update",
)
#: Each marker above holds one of these: searched first, they rule out nearly every body.
_URGENT_HINTS = (b"13201", b"_update")


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

    @property
    def urgent(self) -> bool:
        """A body a guardrail acts on at once: two short searches rule out nearly every
        body (each marker holds one of them), the markers themselves only then."""
        body = self.body
        first, second = _URGENT_HINTS  # exactly two: a third hint would fail here, loudly
        if first not in body and second not in body:
            return False
        return any(marker in body for marker in _URGENT)

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
        callback = parse_callback(kind, body)
    except InvalidReport as exc:
        return Received(kind, body, ReportState.INVALID, _clean(str(exc)))
    except Exception as exc:  # a body that trips a bug is still bad input: 400, kept
        return Received(kind, body, ReportState.INVALID, f"unreadable ({type(exc).__name__})")
    statuses = callback.statuses
    if len(statuses) == 1:  # a body of several reports has no one row to look up by
        report = statuses[0]
        return Received(
            kind,
            body,
            ReportState.RECEIVED,
            link_message_id=report.message_id,
            ref_id=report.ref_id,
            result_code=report.result_code,
        )
    if (
        not statuses
        and not callback.incoming
        and not callback.echoes
        and not callback.changes
        and not callback.sender_events
    ):
        # Readable, but nothing in it for the applier (Meta: a status without a tracked
        # state, a field read for nothing): kept, never queued. Identity changes
        # (system messages, ``user_id_update``) are the identity book's, events about
        # the sender (templates, quality, account) the guardrails': queued.
        return Received(kind, body, ReportState.IGNORED)
    return Received(kind, body, ReportState.RECEIVED)


def mark_invalid(session: Session, report_id: int, error: str) -> None:
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(state=ReportState.INVALID, error=_clean(error))
    )


def settle(session: Session, kept: set[int], empty: set[int], now: datetime) -> None:
    """Stored bodies applied by a stage of their own (echoes, identity changes): those
    with something kept are ``applied``, the rest ``ignored``. A body that also holds
    status reports still unmatched stays so: the sweep brings it back, and applying it
    a second time changes nothing."""
    if kept:
        session.execute(
            update(DeliveryReport)
            .where(
                among(session, DeliveryReport.id, sorted(kept)),
                DeliveryReport.state != ReportState.UNMATCHED,
            )
            .values(state=ReportState.APPLIED, applied_at=now)
        )
    if empty:
        session.execute(
            update(DeliveryReport)
            .where(
                among(session, DeliveryReport.id, sorted(empty)),
                DeliveryReport.state == ReportState.RECEIVED,
            )
            .values(state=ReportState.IGNORED, applied_at=now)
        )


def _clean(text: str) -> str:
    # PostgreSQL text cannot hold NUL; the reason may quote what it could not read.
    return text.replace("\x00", "\\0")[:_ERROR_CHARS]
