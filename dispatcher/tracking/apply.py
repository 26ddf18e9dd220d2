"""Delivery tracking: stored webhook bodies applied to messages, many at a time.

The order matters (ARCHITECTURE 'Crash safety'): a body is committed before anything
else happens (``intake``, ``ingest``), so a crash, a bug or a parse error loses nothing.
Applying then works on whole sets of stored reports (``apply_received``): one query
locks every message they name, the new status of each message is folded from all of
its reports in Python, and the changes go back in one bulk UPDATE. A message's status
only moves forward (``status.advances``): duplicates are harmless, a late ``sent`` never
overwrites ``delivered`` but still fills ``sent_at``, and the result does not depend on
the order in which one set's reports arrived (good news is folded before failures, so
a failure never overrules a delivery it arrived with).

Bodies are read by their provider (``providers.parse_callback``) into provider-neutral
status reports, incoming messages, echoes (what the business sent from elsewhere,
kept per person: ``echoes``), identity changes and usernames (the identity book's:
``identity_changes``). Every link a report teaches the book keeps its source: a status
report's is "message M" at the report's time, its BSUIDs scoped to the portfolio of
the campaign's sender. A report can arrive before the worker has
recorded the message id it refers to (the provider may call back faster than our own
transaction commits). The applier leaves a report about a request still in flight
untried and applies it once the answer is stored (``apply_received`` with
``deferred``, ``apply_deferred``); a report that found no message anyway is kept
``unmatched`` and applied by the worker that records its batch (``apply_waiting``), or
by the periodic ``sweep``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import Table, case, func, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db.bulk import (
    among,
    commit_without_waiting,
    insert_arrays,
    plan_for_lookups,
    update_by_id,
)
from dispatcher.db.models import (
    WAITING_REPORTS,
    Batch,
    Campaign,
    DeliveryReport,
    Message,
    WhatsAppMessageId,
)
from dispatcher.db.timestamps import aware
from dispatcher.preparation import media
from dispatcher.providers import (
    EchoReport,
    IncomingReport,
    InvalidReport,
    Level,
    Pricing,
    StatusReport,
    parse_callback,
)
from dispatcher.providers.base import IdentityChange, SenderEvent, Username
from dispatcher.resending import policy as retry
from dispatcher.settings import get_settings
from dispatcher.status import BatchState, MessageStatus, advances, predecessors
from dispatcher.tracking import echoes as echoes_mod
from dispatcher.tracking import identity_changes, incoming, sender_events
from dispatcher.tracking.intake import (
    STATUS_KINDS,
    ReportState,
    mark_invalid,
)

__all__ = [
    "InvalidReport",
    "ReportState",
    "any_unmatched",
    "apply_deferred",
    "apply_dlr",
    "apply_dlrs",
    "apply_incoming",
    "apply_received",
    "apply_waiting",
    "mark_invalid",
    "sweep",
    "unapplied_from",
]

log = logging.getLogger(__name__)
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_REPORTS: Table = DeliveryReport.__table__  # type: ignore[assignment]
_BATCHES: Table = Batch.__table__  # type: ignore[assignment]
# A literal, so that the planner sees it implies the waiting reports' partial index.
_UNMATCHED = text(f"delivery_reports.state = '{ReportState.UNMATCHED.value}'")

# Which timestamp columns a status fills; later stages imply earlier ones.
_STAMPS: dict[MessageStatus, tuple[str, ...]] = {
    MessageStatus.SENT: ("sent_at",),
    MessageStatus.DELIVERED: ("sent_at", "delivered_at"),
    MessageStatus.READ: ("sent_at", "delivered_at", "read_at"),
    MessageStatus.DELETED: ("sent_at", "delivered_at"),
    MessageStatus.FAILED: ("failed_at",),
}
_BAD_NEWS = frozenset({MessageStatus.FAILED, MessageStatus.UNKNOWN})
_GOOD_NEWS = frozenset(
    {MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ, MessageStatus.DELETED}
)
# SQLite takes at most 32766 parameters per statement.
_LOCK_CHUNK = 8000
# What folding needs to know of a message as it is.
_CURRENT = ("status", "sent_at", "delivered_at", "read_at", "failed_at", "wa_message_id",
            "pricing_model", "pricing_category", "pricing_type", "pricing_billable")  # fmt: skip
_WA_IDS: Table = WhatsAppMessageId.__table__  # type: ignore[assignment]
# Longer ids are not stored: a cut one would never match a reply's ``context.id``.
_WA_ID_CHARS = 128
_PRICING_CHARS = 32


def apply_incoming(
    session: Session,
    report_id: int,
    message: IncomingReport,
    *,
    opt_out_words: frozenset[str] | None = None,
) -> bool:
    """Learn identities from an incoming message; opt-out words suppress the sender.

    Returns True when the sender was suppressed (see ``incoming.apply``).
    """
    return incoming.apply(session, report_id, message, opt_out_words=opt_out_words)


def apply_dlr(session: Session, report_id: int, dlr: StatusReport) -> ReportState:
    """Apply one status report; returns the report's new state."""
    return apply_dlrs(session, [(report_id, dlr)])[report_id]


@dataclass(slots=True)
class _Report:
    id: int
    dlr: StatusReport
    status: MessageStatus
    at: datetime


def _lifecycle_order(report: _Report) -> tuple[bool, int]:
    # Good news up the road first, failures last: the fold is then the same for every
    # arrival order. How many statuses a status may replace ranks it on the road.
    return report.status is MessageStatus.FAILED, len(predecessors(report.status))


def apply_dlrs(
    session: Session,
    reports: Sequence[tuple[int, StatusReport]],
    *,
    known_groups: book.Known | None = None,
) -> dict[int, ReportState]:
    """Apply status reports as one set; returns each report's new state.

    Every message they name is locked (in id order, so concurrent appliers queue
    rather than deadlock), its new values are folded from its reports, and the
    changed messages are written back in one bulk UPDATE.
    """
    states: dict[int, ReportState] = _States()
    now = datetime.now(UTC)
    plan_for_lookups(session)
    pending: list[_Report] = []
    for report_id, dlr in reports:
        new = dlr.message_status
        if dlr.is_request_failure:
            states[report_id] = _fail_request(session, dlr)
        elif new is None or not dlr.message_id:
            states[report_id] = ReportState.IGNORED
        else:
            pending.append(_Report(report_id, dlr, new, aware(dlr.timestamp) or now))
    by_message = _group_by_message(session, pending, states)
    book.learn_links(
        session, _identifier_groups(session, by_message, known_groups), known_groups=known_groups
    )
    changes: list[dict[str, Any]] = []
    media_errors: list[int] = []
    wa_ids: list[dict[str, Any]] = []
    template_failed: dict[int, tuple[int, datetime]] = {}
    for message_id, (row, matched) in sorted(by_message.items()):
        values = _fold(row, matched)
        if values:
            code = values.get("whatsapp_error_code")  # set on failures only
            if code == media.MEDIA_UPLOAD_ERROR:
                media_errors.append(message_id)
            elif code in sender_events.TEMPLATE_CODES:
                template_failed[row.campaign_id] = (code, values.get("failed_at") or now)
            if "wa_message_id" in values:
                wa_ids.append(
                    {
                        "wa_message_id": values["wa_message_id"],
                        "message_id": message_id,
                        "campaign_id": row.campaign_id,
                    }
                )
            changes.append({"id": message_id, "updated_at": now, **values})
    update_by_id(session, _MESSAGES, changes)
    # Every id a message was known by: a reply may answer an attempt before a resend.
    insert_arrays(session, _WA_IDS, wa_ids, ignore_duplicates=True)
    limited = [c["id"] for c in changes if c.get("whatsapp_error_code") in RATE_LIMIT_CODES]
    if limited:
        note_rate_limited(session, limited)
    for message_id in media_errors:
        _forget_media_of(session, message_id)
    if template_failed:  # its template paused or disabled: the campaign stops at once
        sender_events.template_failures(session, template_failed)
    _set_states(session, states, now)
    return states


def _nested(
    session: Session,
    what: str,
    rows: Sequence[tuple[int, object]],
    failed: list[int],
    apply: Callable[[], int],
) -> int:
    """``apply`` in a savepoint: what it returns, or 0 with ``rows``' reports added to
    ``failed`` when the database refused it (the rest of the set is kept)."""
    try:
        with session.begin_nested():
            return apply()
    except SQLAlchemyError as exc:
        log.warning("%d %s could not be applied: %s", len(rows), what, type(exc).__name__)
        failed.extend(sorted({report_id for report_id, _ in rows}))
        return 0


class _States(dict[int, ReportState]):
    """Each stored body's new state. A body may hold several reports (Meta batches
    statuses): it stays ``unmatched`` while any of them is, so the sweep brings it back
    (its applied reports are harmless again), and counts as applied when any was."""

    def __setitem__(self, report_id: int, state: ReportState) -> None:
        held = self.get(report_id)
        if held is None or _RANK[state] > _RANK[held]:
            super().__setitem__(report_id, state)


_RANK = {ReportState.IGNORED: 0, ReportState.APPLIED: 1, ReportState.UNMATCHED: 2}


_Grouped = dict[int, tuple[Any, list["_Report"]]]


def _identifier_groups(
    session: Session, by_message: _Grouped, known_groups: book.Known | None = None
) -> list[tuple[tuple[str, ...], book.Source]]:
    """The identifiers the reports name (seed 004 'BSUID - Message Status
    Notifications'), once per distinct set (a message's reports repeat them), each with
    its source: the first report's message and time, and the portfolio of the
    campaign's sender. Only reports about a message we sent that name the destination
    we used count: a report about anything else cannot link two people in the book.
    Groups in ``known_groups`` (settled in the book) are left out here, before a source
    is made for each: most reports repeat a group an earlier set taught."""
    groups: dict[tuple[str, ...], tuple[int, Any, _Report]] = {}
    for message_id, (row, matched) in by_message.items():
        for report in matched:
            raw = report.dlr.named_identifiers
            if raw:
                group = book.identifiers_in(raw)  # cached: reports repeat them
                if known_groups is not None and group in known_groups:
                    continue
                if len(group) > 1 and row.destination in group:
                    held = groups.get(group)
                    if held is None or report.at < held[2].at:
                        groups[group] = (message_id, row, report)
    if not groups:
        return []
    portfolios = _portfolios(session, {row.campaign_id for _, row, _ in groups.values()})
    links = []
    for group, (message_id, row, report) in groups.items():
        portfolio = portfolios.get(row.campaign_id, "")
        links.append((group, book.Source("dlr", f"message {message_id}", report.at, portfolio)))
    return links


# (database, campaign id) -> the business portfolio of its sender: a campaign's sender
# never changes.
_PORTFOLIOS: dict[tuple[str, int], str] = {}
_PORTFOLIOS_KEPT = 10_000


def _portfolios(session: Session, campaign_ids: set[int]) -> dict[int, str]:
    """The business portfolio each campaign sends through (``campaigns.source``),
    remembered by the process."""
    database = str(session.get_bind().engine.url)
    missing = [c for c in campaign_ids if (database, c) not in _PORTFOLIOS]
    if missing:
        if len(_PORTFOLIOS) > _PORTFOLIOS_KEPT:
            _PORTFOLIOS.clear()
        settings = get_settings()
        for campaign_id, source in session.execute(
            select(Campaign.id, Campaign.source).where(among(session, Campaign.id, missing))
        ):
            _PORTFOLIOS[database, campaign_id] = settings.portfolio_name(source)
    return {c: _PORTFOLIOS[database, c] for c in campaign_ids if (database, c) in _PORTFOLIOS}


def _group_by_message(
    session: Session, reports: list[_Report], states: dict[int, ReportState]
) -> _Grouped:
    """Lock the messages the reports are about; reports about none are unmatched."""
    if not reports:
        return {}
    rows = _lock_messages(session, {r.dlr.message_id for r in reports if r.dlr.message_id})
    by_message, misses = _match(rows, reports, states)
    if misses:
        found = _resolve_in_doubt(session, misses)
        if found:
            more, misses = _match(_lock_messages(session, found), misses, states)
            for message_id, (row, matched) in more.items():
                by_message.setdefault(message_id, (row, []))[1].extend(matched)
    for report in misses:
        states[report.id] = ReportState.UNMATCHED
    return by_message


def _lock_messages(session: Session, link_ids: Iterable[str]) -> list[Any]:
    """The messages with these messageIds (or, for those none has, as their previous
    attempt's), locked in id order so concurrent appliers queue rather than deadlock.

    Two lookups, not one with OR: the planner turns ``a = ANY(..) OR b = ANY(..)`` into
    a sequential scan of every message; one column's ``= ANY`` stays on its index.
    """
    wanted = sorted(link_ids)
    rows = _select_locked(session, _MESSAGES.c.link_message_id, wanted)
    found = {row.link_message_id for row in rows}
    missing = [link_id for link_id in wanted if link_id not in found]
    if missing:
        rows += _select_locked(session, _MESSAGES.c.previous_link_message_id, missing)
    return rows


def _select_locked(session: Session, column: Any, link_ids: list[str]) -> list[Any]:
    table = _MESSAGES
    rows: list[Any] = []
    for start in range(0, len(link_ids), _LOCK_CHUNK):
        rows += session.execute(
            select(
                table.c.id,
                table.c.campaign_id,
                table.c.link_message_id,
                table.c.previous_link_message_id,
                table.c.destination,
            )
            .add_columns(*(table.c[c] for c in _CURRENT))
            .where(among(session, column, link_ids[start : start + _LOCK_CHUNK]))
            .order_by(table.c.id)
            .with_for_update()
        ).all()
    return rows


def _match(
    rows: list[Any], reports: list[_Report], states: dict[int, ReportState]
) -> tuple[_Grouped, list[_Report]]:
    """Reports grouped by the message they are about, and those about none we know."""
    current = {row.link_message_id: row for row in rows if row.link_message_id}
    previous = {row.previous_link_message_id: row for row in rows if row.previous_link_message_id}
    by_message: _Grouped = {}
    misses: list[_Report] = []
    for report in reports:
        row = current.get(report.dlr.message_id)
        if row is None and report.dlr.message_id in previous:
            if report.status not in _GOOD_NEWS:
                # A report for the attempt before a resend: the person did get that one,
                # so its good news counts (and stops the resend); its failures are old news.
                states[report.id] = ReportState.IGNORED
                continue
            row = previous[report.dlr.message_id]
        if row is None:
            misses.append(report)
            continue
        by_message.setdefault(row.id, (row, []))[1].append(report)
        states[report.id] = ReportState.APPLIED
    return by_message, misses


#: Meta's rate-limit errors: each lowers the sender's rate for a while (``Throttle``).
RATE_LIMIT_CODES = frozenset(
    code for code, kind in retry.CLASS_OF.items() if kind is retry.RetryClass.RATE_LIMIT
)


class Refused(NamedTuple):
    """A sender's messages refused for its rate limit, and the level they went at: the
    limiter cuts the rate by their share of a second (``Throttle.penalise``)."""

    messages: int
    level: int


def note_rate_limited(session: Session, message_ids: list[int]) -> None:
    """Remember, on the session, the senders whose messages were rate-limited, and
    which; whoever commits it tells the limiter (``rate_limited_senders``). A message
    noted again (its reports retried one by one after a failed set) counts once."""
    rows = session.execute(
        select(Campaign.source, Campaign.rate_per_second, Message.id)
        .join(Message, Message.campaign_id == Campaign.id)
        .where(among(session, Message.id, message_ids))
    )
    noted: dict[str, tuple[set[int], int]] = session.info.setdefault(_RATE_LIMITED, {})
    for source, rate, message_id in rows:
        ids, level = noted.setdefault(source, (set(), 0))
        ids.add(message_id)
        level = max(level, rate or Level.STANDARD.messages_per_second)
        noted[source] = (ids, level)


def rate_limited_senders(session: Session) -> dict[str, Refused]:
    """The senders ``note_rate_limited`` noted on this session, with how many of their
    messages (and forgets them)."""
    noted: dict[str, tuple[set[int], int]] = session.info.pop(_RATE_LIMITED, {})
    return {source: Refused(len(ids), level) for source, (ids, level) in noted.items()}


_RATE_LIMITED = "dispatcher.rate_limited_senders"


def _fold(row: Any, reports: list[_Report]) -> dict[str, Any]:
    """The columns that change when ``reports`` reach the message as it is in ``row``."""
    try:
        status = MessageStatus(row.status)
    except ValueError:
        return {}
    changes: dict[str, Any] = {}
    firsts: dict[str, datetime] = {}
    for report in reports if len(reports) == 1 else sorted(reports, key=_lifecycle_order):
        if advances(status, report.status):
            status = report.status
            changes["status"] = status.value
            changes["result_code"] = report.dlr.result_code
            if status in _BAD_NEWS:
                changes.update(_failure(report.dlr))
        elif report.status in _BAD_NEWS:
            continue  # a failure that changes nothing leaves no trace
        # A late or duplicate report leaves the status, but a missing stage time
        # (e.g. 'sent' arriving after 'delivered') is still worth recording.
        for column in _STAMPS.get(report.status, ()):
            if column not in firsts or report.at < firsts[column]:
                firsts[column] = report.at
    for column, at in firsts.items():
        if getattr(row, column) is None:
            changes[column] = at
    _what_whatsapp_said(row, reports, changes)
    return changes


def _what_whatsapp_said(row: Any, reports: list[_Report], changes: dict[str, Any]) -> None:
    """WhatsApp's message id and pricing that the reports carry (seed 004 DLR Example#1,
    customParameters), where they differ from the message's; the last report saying
    wins."""
    wa_id: str | None = None
    pricing: Pricing | None = None
    for report in reversed(reports):  # the last saying wins: the rest are not read
        if wa_id is None:
            wa_id = report.dlr.whatsapp_message_id or None  # an empty id says nothing
        if pricing is None:
            pricing = report.dlr.pricing
        if wa_id is not None and pricing is not None:
            break
    if wa_id is not None and len(wa_id) <= _WA_ID_CHARS and wa_id != row.wa_message_id:
        changes["wa_message_id"] = wa_id
    if pricing is None:
        return
    for column, value in _pricing_columns(pricing):
        if value != getattr(row, column):
            changes[column] = value


@lru_cache(maxsize=1024)
def _pricing_columns(pricing: Pricing) -> tuple[tuple[str, str | bool], ...]:
    """The message columns a report's pricing sets: the ones it says, fitted to their
    width. Remembered: a campaign's reports say the same few pricings over and over."""
    said = (
        ("pricing_model", pricing.model and pricing.model[:_PRICING_CHARS]),
        ("pricing_category", pricing.category and pricing.category[:_PRICING_CHARS]),
        ("pricing_type", pricing.type and pricing.type[:_PRICING_CHARS]),
        ("pricing_billable", pricing.billable),
    )
    return tuple((column, value) for column, value in said if value is not None)


def _failure(dlr: StatusReport) -> dict[str, Any]:
    return {
        "result_description": (dlr.result_description or "")[:1000] or None,
        "whatsapp_error_code": dlr.whatsapp_error_code,
    }


def _resolve_in_doubt(session: Session, reports: list[_Report]) -> set[str]:
    """An in-doubt batch never got its messageIds; the identifiers in a report (seed 004
    'BSUID - Message Status Notifications') name the message, whichever one we sent to.
    Returns the messageIds now recorded."""
    refs = {r.dlr.ref_id for r in reports if r.dlr.ref_id and r.dlr.named_identifiers}
    if not refs:
        return set()
    in_doubt = set(
        session.scalars(
            select(Batch.id).where(Batch.id.in_(refs), Batch.state == BatchState.IN_DOUBT)
        )
    )
    found: set[str] = set()
    for report in reports:
        identifiers = book.identifiers_in(report.dlr.named_identifiers)
        if report.dlr.ref_id not in in_doubt or not identifiers or not report.dlr.message_id:
            continue
        message_id = session.scalar(
            select(Message.id)
            .where(
                Message.batch_id == report.dlr.ref_id,
                Message.destination.in_(identifiers),
                Message.link_message_id.is_(None),
            )
            .limit(1)
        )
        if message_id is not None:
            session.execute(
                update(Message)
                .where(Message.id == message_id, Message.link_message_id.is_(None))
                .values(link_message_id=report.dlr.message_id)
            )
            found.add(report.dlr.message_id)
    return found


def _fail_request(session: Session, dlr: StatusReport) -> ReportState:
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
            whatsapp_error_code=dlr.whatsapp_error_code,
            failed_at=aware(dlr.timestamp) or datetime.now(UTC),
        )
    )
    return ReportState.APPLIED


def _forget_media_of(session: Session, message_id: int) -> None:
    """The provider could not resolve the media id: stop reusing it (refresh on failure)."""
    payload = session.scalar(
        select(Batch.payload)
        .join(Message, Message.batch_id == Batch.id)
        .where(Message.id == message_id)
    )
    if payload:
        forgotten = media.forget(session, media.media_ids_in(payload))
        if forgotten:
            log.warning("forgot %d cached media id(s) after a media upload error", forgotten)


def _set_states(session: Session, states: dict[int, ReportState], now: datetime) -> None:
    by_state: dict[ReportState, list[int]] = defaultdict(list)
    for report_id, state in states.items():
        by_state[state].append(report_id)
    for state, ids in by_state.items():
        session.execute(
            update(_REPORTS)
            .where(among(session, _REPORTS.c.id, ids))
            .values(state=state, applied_at=None if state is ReportState.UNMATCHED else now)
        )


# -- applying stored reports ---------------------------------------------------------


def apply_received(
    session: Session,
    *,
    after_id: int = 0,
    limit: int = 1000,
    opt_out_words: frozenset[str] | None = None,
    known_groups: book.Known | None = None,
    deferred: list[int] | None = None,
) -> tuple[int | None, int]:
    """Apply the stored reports nobody has tried yet among the ``limit`` rows after
    ``after_id``; returns the last id looked at (None: no rows after it) and how many
    rows were looked at.
    ``known_groups`` (see ``book.Known``) is the caller's to commit or discard.
    With ``deferred``, reports about a request still in flight are left as they are
    and their ids added to it, for ``apply_deferred`` (see ``_landed``).

    The walk follows the primary key from where the caller left off rather than
    searching by state: every applied report leaves a dead ``received`` entry in the
    state index until VACUUM, and a search by state would wade through all of them.
    Rows another applier holds are skipped; rows committed behind the caller's mark
    (by another process) are the sweep's.
    """
    # The reports' states change in the same transaction as what they say: a commit
    # lost in a crash leaves them 'received', and they are applied again. No need to
    # wait for the disk.
    commit_without_waiting(session)
    window = session.scalars(
        select(_REPORTS.c.id).where(_REPORTS.c.id > after_id).order_by(_REPORTS.c.id).limit(limit)
    ).all()
    if not window:
        return None, 0
    # Only the window's untried rows are read and locked: most of the others were
    # applied already, and a row lock is a write.
    fresh = session.execute(
        select(_REPORTS.c.id, _REPORTS.c.kind, _REPORTS.c.body, _REPORTS.c.ref_id)
        .where(
            _REPORTS.c.id > after_id,
            _REPORTS.c.id <= window[-1],
            _REPORTS.c.state == ReportState.RECEIVED,
            _REPORTS.c.tried_at.is_(None),
        )
        .order_by(_REPORTS.c.id)
        .with_for_update(skip_locked=True)
    ).all()
    rows = _landed(session, fresh, deferred)
    _apply_rows(session, rows, opt_out_words, mark_failures_tried=True, known_groups=known_groups)
    return int(window[-1]), len(window)


def apply_deferred(
    session: Session,
    report_ids: Sequence[int],
    deferred: list[int],
    *,
    opt_out_words: frozenset[str] | None = None,
    known_groups: book.Known | None = None,
) -> int:
    """Apply the reports ``apply_received`` deferred whose requests have been answered
    since; the ids of those still in flight go to ``deferred``. Reports applied or
    held by someone else meanwhile (the sweep) drop out. Returns how many reached a
    message."""
    if not report_ids:
        return 0
    commit_without_waiting(session)
    fresh: list[Any] = []
    for start in range(0, len(report_ids), _LOCK_CHUNK):  # SQLite's parameter limit
        fresh += session.execute(
            select(_REPORTS.c.id, _REPORTS.c.kind, _REPORTS.c.body, _REPORTS.c.ref_id)
            .where(among(session, _REPORTS.c.id, list(report_ids[start : start + _LOCK_CHUNK])),
                   _REPORTS.c.state == ReportState.RECEIVED)
            .order_by(_REPORTS.c.id)
            .with_for_update(skip_locked=True)
        ).all()  # fmt: skip
    rows = _landed(session, fresh, deferred)
    return _apply_rows(session, rows, opt_out_words, mark_failures_tried=True,
                       known_groups=known_groups)  # fmt: skip


def _landed(session: Session, rows: Sequence[Any], deferred: list[int] | None) -> list[Any]:
    """The rows (id, kind, body, ref_id) that may be applied now, as (id, kind, body);
    the ids of the others, about a request still in flight, go to ``deferred`` (None:
    every row is applied now).

    A provider may call back before the worker has stored the ids its request was
    answered with. Tried then, such a report would not match, and would be read, locked
    and marked ``unmatched`` for nothing, to be read and applied once more later.
    Instead it waits, untouched, until its batch has left ``submitting``: the batch's
    state and the messages' ids change in one transaction, and the state is read here
    before the messages are, so a batch seen answered has its ids in sight.
    """
    if deferred is None:
        return [(report_id, kind, body) for report_id, kind, body, _ in rows]
    refs = sorted({ref_id for *_, ref_id in rows if ref_id})
    flying: set[str] = set()
    for start in range(0, len(refs), _LOCK_CHUNK):  # SQLite's parameter limit
        flying.update(
            session.scalars(
                select(_BATCHES.c.id).where(
                    among(session, _BATCHES.c.id, refs[start : start + _LOCK_CHUNK]),
                    _BATCHES.c.state == BatchState.SUBMITTING,
                )
            )
        )
    landed: list[Any] = []
    for report_id, kind, body, ref_id in rows:
        if ref_id in flying:
            deferred.append(report_id)
        else:
            landed.append((report_id, kind, body))
    return landed


def unapplied_from(session: Session) -> int:
    """Where an applier starting now begins its walk: just before the oldest report
    nobody has tried yet, else after the newest."""
    oldest = session.scalar(
        select(func.min(_REPORTS.c.id)).where(
            WAITING_REPORTS,
            _REPORTS.c.state == ReportState.RECEIVED,
            _REPORTS.c.tried_at.is_(None),
        )
    )
    if oldest is not None:
        return int(oldest) - 1
    return int(session.scalar(select(func.coalesce(func.max(_REPORTS.c.id), 0))) or 0)


def apply_waiting_many(
    session: Session, ref_ids: Sequence[str], *, unmatched_only: bool = False
) -> int:
    """``apply_waiting`` for many batches in one lookup. ``unmatched_only``: only the
    reports somebody tried already (the applier leaves a batch's reports untried while
    its request is in flight, and applies them itself once it has landed)."""
    waiting = _UNMATCHED if unmatched_only else WAITING_REPORTS
    reports = session.execute(
        select(DeliveryReport.id, DeliveryReport.kind, DeliveryReport.body)
        .where(
            among(session, DeliveryReport.ref_id, list(ref_ids)),
            waiting,
            DeliveryReport.kind.in_(STATUS_KINDS),
        )
        .order_by(DeliveryReport.id)
        .with_for_update()
    ).all()
    return _apply_rows(session, reports, None) if reports else 0


def any_unmatched(session: Session, ref_ids: Sequence[str]) -> bool:
    """Whether a status report about one of these batches was tried and left
    ``unmatched``: one index probe, so that recording a slice pays for
    ``apply_waiting_many`` only when there is something for it."""
    found = (
        session.connection()  # Core: once a slice, the ORM's layers cost more than the probe
        .execute(
            select(_REPORTS.c.id)
            .where(among(session, _REPORTS.c.ref_id, list(ref_ids)), _UNMATCHED)
            .limit(1)
        )
        .first()
    )
    return found is not None


def apply_waiting(session: Session, ref_id: str) -> int:
    """Apply the reports of a batch that arrived before its messageIds were stored."""
    reports = session.execute(
        select(DeliveryReport.id, DeliveryReport.kind, DeliveryReport.body)
        .where(
            DeliveryReport.ref_id == ref_id,
            WAITING_REPORTS,
            DeliveryReport.kind.in_(STATUS_KINDS),
        )
        .order_by(DeliveryReport.id)
        # Waits for an applier that holds some of them: it may have looked before the
        # ids were committed, and would leave them unmatched for the sweep.
        .with_for_update()
    ).all()
    return _apply_rows(session, reports, None)


# A report still unmatched after this long belongs to no message we know (another
# system on the gate, or a batch settled otherwise); the sweep stops trying it.
SWEEP_HORIZON = timedelta(days=3)


def sweep(session: Session, older_than_seconds: float = 5.0, limit: int = 1000) -> int:
    """Re-apply reports left behind (receiver crashed mid-apply, or still unmatched).

    Least recently tried first, so a pile of reports that never match cannot starve
    newer ones; a set that fails is retried one report at a time, so one bad row cannot
    block the rest.
    """
    now = datetime.now(UTC)
    found = session.execute(
        select(DeliveryReport.id, DeliveryReport.kind, DeliveryReport.body, DeliveryReport.ref_id)
        .where(
            WAITING_REPORTS,
            DeliveryReport.received_at < now - timedelta(seconds=older_than_seconds),
            DeliveryReport.received_at > now - SWEEP_HORIZON,
        )
        .order_by(
            case((DeliveryReport.tried_at.is_(None), 0), else_=1),  # never tried first
            DeliveryReport.tried_at,
            DeliveryReport.id,
        )
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    # A request still in flight: its reports are the applier's once it is answered (a
    # try now would leave them 'unmatched' after the worker has looked for such).
    reports = _landed(session, found, [])
    if reports:
        session.execute(
            update(DeliveryReport)
            .where(among(session, DeliveryReport.id, [r[0] for r in reports]))
            .values(tried_at=now)
        )
    return _apply_rows(session, reports, None)


def _apply_rows(
    session: Session,
    rows: Sequence[Any],
    opt_out_words: frozenset[str] | None,
    *,
    mark_failures_tried: bool = False,
    known_groups: book.Known | None = None,
) -> int:
    """Apply stored rows (id, kind, body); returns how many reached a message."""
    plan_for_lookups(session)
    read = _read(session, rows)
    failed: list[int] = []
    applied = _apply_statuses(session, read.dlrs, failed, known_groups) if read.dlrs else 0
    for report_id, message in read.mos:
        try:
            with session.begin_nested():
                incoming.apply(session, report_id, message, opt_out_words=opt_out_words)
            applied += 1
        except SQLAlchemyError as exc:
            log.warning("report %s could not be applied: %s", report_id, type(exc).__name__)
            failed.append(report_id)
    if read.echoes:
        applied += _nested(session, "echoes", read.echoes, failed,
                           lambda: echoes_mod.apply(session, read.echoes))  # fmt: skip
    if read.changes or read.usernames:
        # After the statuses and messages of the same rows: a username is stored on
        # the links they made, and a late report is judged by the book's change times.
        applied += _nested(session, "identity changes", read.changes, failed,
                           lambda: identity_changes.apply(session, read.changes,
                                                          read.usernames))  # fmt: skip
    if read.sender_events:
        applied += _nested(session, "sender events", read.sender_events, failed,
                           lambda: sender_events.apply(session, read.sender_events))  # fmt: skip
    if failed and mark_failures_tried:
        # Out of the applier's way; the sweep retries them, least recently tried first.
        session.execute(
            update(DeliveryReport)
            .where(among(session, DeliveryReport.id, failed))
            .values(tried_at=datetime.now(UTC))
        )
    return applied


def _apply_statuses(
    session: Session,
    dlrs: list[tuple[int, StatusReport]],
    failed: list[int],
    known_groups: book.Known | None,
) -> int:
    """Apply status reports as one set, else one by one (those that fail go to
    ``failed``); returns how many reached a message."""
    try:
        with session.begin_nested():
            states = apply_dlrs(session, dlrs, known_groups=known_groups)
        return sum(s is not ReportState.UNMATCHED for s in states.values())
    except SQLAlchemyError as exc:
        if known_groups is not None:
            known_groups.discard()  # rolled back; one by one learns without it
        log.warning("%d reports could not be applied together (%s); one by one", len(dlrs),
                    type(exc).__name__)  # fmt: skip
    applied = 0
    for report_id, dlr in dlrs:
        try:
            with session.begin_nested():
                applied += apply_dlr(session, report_id, dlr) is not ReportState.UNMATCHED
        except SQLAlchemyError as exc:
            log.warning("report %s could not be applied: %s", report_id, type(exc).__name__)
            failed.append(report_id)
    return applied


@dataclass(slots=True)
class _Read:
    """What stored rows hold, each part with its row's id."""

    dlrs: list[tuple[int, StatusReport]]
    mos: list[tuple[int, IncomingReport]]
    echoes: list[tuple[int, EchoReport]]
    changes: list[tuple[int, IdentityChange]]
    usernames: list[tuple[int, Username]]
    sender_events: list[tuple[int, SenderEvent]]


def _read(session: Session, rows: Sequence[Any]) -> _Read:
    """The status reports, incoming messages, echoes, identity changes and usernames of
    stored rows (id, kind, body), each with its row's id; unreadable rows are marked
    invalid."""
    dlrs: list[tuple[int, StatusReport]] = []
    mos: list[tuple[int, IncomingReport]] = []
    echoes: list[tuple[int, EchoReport]] = []
    changes: list[tuple[int, IdentityChange]] = []
    usernames: list[tuple[int, Username]] = []
    events: list[tuple[int, SenderEvent]] = []
    for report_id, kind, body in rows:
        try:
            parsed = parse_callback(kind, body)
        except InvalidReport as exc:
            mark_invalid(session, report_id, str(exc))
            continue
        for status in parsed.statuses:
            dlrs.append((report_id, status))
        for message in parsed.incoming:
            mos.append((report_id, message))
        for echo in parsed.echoes:
            echoes.append((report_id, echo))
        for change in parsed.changes:
            changes.append((report_id, change))
        for username in parsed.usernames:
            usernames.append((report_id, username))
        for event in parsed.sender_events:
            events.append((report_id, event))
    return _Read(dlrs, mos, echoes, changes, usernames, events)
