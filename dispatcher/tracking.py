"""Delivery tracking: raw webhook bodies stored first, then applied to messages.

The order matters (ARCHITECTURE 'Crash safety'): a body is committed before anything
else happens, so a crash, a bug or a parse error loses nothing. Applying is idempotent
and order-independent: a message's status only moves forward (``status.advances``),
enforced by a conditional UPDATE so concurrent receivers cannot go backwards.

A report can arrive before the worker has recorded the ``messageId`` it refers to
(LINK may call back faster than our own transaction commits). Such a report is kept
``unmatched`` and applied when the batch's ids are recorded (``apply_waiting``), or by
the periodic sweep.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from sqlalchemy import case, func, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatcher import book, media
from dispatcher.db.models import Batch, CareWindow, DeliveryReport, Message, Suppression
from dispatcher.dbutil import insert_ignoring_duplicates, upsert_latest
from dispatcher.link.codes import DLR_STATUS, whatsapp_error_code
from dispatcher.link.models import DeliveryReport as Dlr
from dispatcher.link.models import IncomingMessage
from dispatcher.status import MessageStatus, predecessors

log = logging.getLogger(__name__)
OPT_OUT_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "STOPP", "AVSLUTT", "STOPALL", "END", "QUIT"})


class ReportState(StrEnum):
    RECEIVED = "received"  # stored, not yet applied
    APPLIED = "applied"
    UNMATCHED = "unmatched"  # no message carries its messageId (yet)
    INVALID = "invalid"  # not a report we can read; kept for inspection
    IGNORED = "ignored"  # readable, but nothing to change (e.g. unknown code)


class InvalidReport(ValueError):
    """The body is not a report we can read."""


# Which timestamp columns a status fills; later stages imply earlier ones.
_STAMPS: dict[MessageStatus, tuple[str, ...]] = {
    MessageStatus.SENT: ("sent_at",),
    MessageStatus.DELIVERED: ("sent_at", "delivered_at"),
    MessageStatus.READ: ("sent_at", "delivered_at", "read_at"),
    MessageStatus.DELETED: ("sent_at", "delivered_at"),
    MessageStatus.FAILED: ("failed_at",),
}


def store(session: Session, kind: str, body: bytes) -> int:
    """Keep a webhook body exactly as received; returns its id."""
    report = DeliveryReport(kind=kind, body=body, state=ReportState.RECEIVED)
    session.add(report)
    session.flush()
    return report.id


def parse_dlrs(body: bytes) -> list[Dlr]:
    """The report in a callback body: one object per callback (seed 004, "One callback
    relates to one message"), so one stored body has exactly one state."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidReport(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidReport("expected a JSON object (a Message Status Notification)")
    try:
        return [Dlr.model_validate(data)]
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(body)"
        raise InvalidReport(f"{where}: {first['msg']}") from None


def parse_incoming(body: bytes) -> IncomingMessage:
    try:
        data = json.loads(body)
        return IncomingMessage.model_validate(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidReport(f"not an incoming message: {exc}") from None


def mark_invalid(session: Session, report_id: int, error: str) -> None:
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(state=ReportState.INVALID, error=error[:2000])
    )


def apply_dlr(session: Session, report_id: int, dlr: Dlr) -> ReportState:
    """Apply one status notification; returns the report's new state."""
    state = _apply(session, dlr)
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(
            state=state,
            link_message_id=dlr.message_id,
            ref_id=dlr.ref_id,
            result_code=dlr.result_code,
            applied_at=datetime.now(UTC) if state is not ReportState.UNMATCHED else None,
        )
    )
    return state


def _apply(session: Session, dlr: Dlr) -> ReportState:
    new = DLR_STATUS.get(dlr.result_code)
    custom = dlr.custom_parameters or {}
    identifiers = book.identifiers_from(custom)
    if len(identifiers) > 1:
        book.learn(session, identifiers, "dlr")
    if dlr.is_request_failure:
        return _fail_request(session, dlr)
    if new is None:
        return ReportState.IGNORED
    message_id = _find_message(session, dlr, custom, new)
    if message_id is None:
        return ReportState.UNMATCHED
    at = dlr.timestamp or datetime.now(UTC)
    values: dict[str, Any] = {"status": new}
    if new in (MessageStatus.FAILED, MessageStatus.UNKNOWN):
        values |= {
            "result_code": dlr.result_code,
            "result_description": (dlr.result_description or "")[:1000] or None,
            "whatsapp_error_code": whatsapp_error_code(
                dlr.result_description, _text(custom.get("metaErrorDetails"))
            ),
        }
    else:
        values["result_code"] = dlr.result_code
    for column in _STAMPS.get(new, ()):
        values[column] = func.coalesce(getattr(Message, column), at)
    changed = session.execute(
        update(Message)
        .where(Message.id == message_id, Message.status.in_(predecessors(new)))
        .values(**values)
    ).rowcount  # type: ignore[attr-defined]
    if changed and values.get("whatsapp_error_code") == media.MEDIA_UPLOAD_ERROR:
        _forget_media_of(session, message_id)
    if not changed and new not in (MessageStatus.FAILED, MessageStatus.UNKNOWN):
        # A late or duplicate report: the status stays, but a missing stage time
        # (e.g. 'sent' arriving after 'delivered') is still worth recording.
        stamps = {c: func.coalesce(getattr(Message, c), at) for c in _STAMPS.get(new, ())}
        if stamps:
            session.execute(update(Message).where(Message.id == message_id).values(**stamps))
    return ReportState.APPLIED


def _forget_media_of(session: Session, message_id: int) -> None:
    """LINK could not resolve the media id: stop reusing it (refresh on failure)."""
    payload = session.scalar(
        select(Batch.payload).join(Message, Message.batch_id == Batch.id).where(
            Message.id == message_id
        )
    )
    if payload:
        forgotten = media.forget(session, media.media_ids_in(payload))
        if forgotten:
            log.warning("forgot %d cached media id(s) after a media upload error", forgotten)


_GOOD_NEWS = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.DELETED}
)


def _find_message(
    session: Session, dlr: Dlr, custom: dict[str, Any], new: MessageStatus
) -> int | None:
    if dlr.message_id:
        found = session.scalar(select(Message.id).where(Message.link_message_id == dlr.message_id))
        if found is not None:
            return found
        if new in _GOOD_NEWS:
            # A report for the attempt before a resend: the person did get that one, so
            # it counts (and stops the resend); its late failures are old news.
            found = session.scalar(
                select(Message.id).where(Message.previous_link_message_id == dlr.message_id)
            )
            if found is not None:
                return found
    # An in-doubt batch never got its messageIds; the identifiers in the DLR (seed 004
    # 'BSUID - Message Status Notifications') settle it, whichever one we sent to.
    identifiers = book.identifiers_from(custom)
    if dlr.ref_id and identifiers:
        found = session.scalar(
            select(Message.id)
            .join(Batch, Batch.id == Message.batch_id)
            .where(
                Batch.id == dlr.ref_id,
                Batch.state == "in_doubt",
                Message.destination.in_(identifiers),
                Message.link_message_id.is_(None),
            )
            .limit(1)
        )
        if found is not None and dlr.message_id:
            session.execute(
                update(Message)
                .where(Message.id == found, Message.link_message_id.is_(None))
                .values(link_message_id=dlr.message_id)
            )
        return found
    return None


def _fail_request(session: Session, dlr: Dlr) -> ReportState:
    """Seed 004: type "request" / index -1 means no message of the request was sent."""
    if not dlr.ref_id:
        return ReportState.IGNORED
    session.execute(
        update(Message)
        .where(
            Message.batch_id == dlr.ref_id,
            Message.status.in_(predecessors(MessageStatus.FAILED)),
        )
        .values(
            status=MessageStatus.FAILED,
            result_code=dlr.result_code,
            result_description=(dlr.result_description or "request failed")[:1000],
            whatsapp_error_code=whatsapp_error_code(dlr.result_description),
            failed_at=dlr.timestamp or datetime.now(UTC),
        )
    )
    return ReportState.APPLIED


def apply_waiting(session: Session, ref_id: str) -> int:
    """Apply the reports of a batch that arrived before its messageIds were stored."""
    reports = session.execute(
        select(DeliveryReport.id, DeliveryReport.body).where(
            DeliveryReport.ref_id == ref_id,
            DeliveryReport.state.in_((ReportState.UNMATCHED, ReportState.RECEIVED)),
            DeliveryReport.kind == "dlr",
        )
    ).all()
    return _reapply(session, reports)


# A report still unmatched after this long belongs to no message we know (another
# system on the gate, or a batch settled otherwise); the sweep stops trying it.
SWEEP_HORIZON = timedelta(days=3)


def sweep(session: Session, older_than_seconds: float = 5.0, limit: int = 1000) -> int:
    """Re-apply reports left behind (receiver crashed mid-apply, or still unmatched).

    Least recently tried first, so a pile of reports that never match cannot starve
    newer ones; each report in its own savepoint, so one bad row cannot block the rest.
    """
    now = datetime.now(UTC)
    reports = session.execute(
        select(DeliveryReport.id, DeliveryReport.body)
        .where(
            DeliveryReport.kind == "dlr",
            DeliveryReport.state.in_((ReportState.UNMATCHED, ReportState.RECEIVED)),
            DeliveryReport.received_at < now - timedelta(seconds=older_than_seconds),
            DeliveryReport.received_at > now - SWEEP_HORIZON,
        )
        .order_by(
            case((DeliveryReport.tried_at.is_(None), 0), else_=1),  # never tried first
            DeliveryReport.tried_at,
            DeliveryReport.id,
        )
        .limit(limit)
    ).all()
    if reports:
        session.execute(
            update(DeliveryReport)
            .where(DeliveryReport.id.in_([r[0] for r in reports]))
            .values(tried_at=now)
        )
    return _reapply(session, reports)


def _reapply(session: Session, reports: Any) -> int:
    applied = 0
    for report_id, body in reports:
        try:
            with session.begin_nested():
                try:
                    dlrs = parse_dlrs(body)
                except InvalidReport as exc:
                    mark_invalid(session, report_id, str(exc))
                    continue
                for dlr in dlrs:
                    if apply_dlr(session, report_id, dlr) is not ReportState.UNMATCHED:
                        applied += 1
        except SQLAlchemyError as exc:
            log.warning("report %s could not be applied: %s", report_id, type(exc).__name__)
    return applied


def apply_incoming(session: Session, report_id: int, message: IncomingMessage) -> bool:
    """Learn identities from an incoming message; opt-out words suppress the sender.

    Returns True when the sender was suppressed.
    """
    identifiers = book.identifiers_from(message.custom_parameters, message.source)
    book.learn(session, identifiers, "mo")
    # A message from the person opens the 24-hour customer care window (seed 004).
    at = message.timestamp or datetime.now(UTC)
    upsert_latest(
        session,
        CareWindow.__table__,  # type: ignore[arg-type]
        "identifier",
        "last_incoming_at",
        [{"identifier": i, "last_incoming_at": at} for i in identifiers],
    )
    text = ""
    if message.content:
        inner = message.content.get("message")
        if isinstance(inner, dict):
            text = _text(inner.get("text")) or ""
    suppressed = text.strip().upper() in OPT_OUT_WORDS
    if suppressed:
        insert_ignoring_duplicates(
            session,
            Suppression.__table__,  # type: ignore[arg-type]
            [{"identifier": i, "reason": f"opt-out keyword {text.strip()!r}"} for i in identifiers],
        )
    session.execute(
        update(DeliveryReport)
        .where(DeliveryReport.id == report_id)
        .values(state=ReportState.APPLIED, applied_at=datetime.now(UTC))
    )
    return suppressed


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
