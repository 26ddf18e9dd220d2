"""What the console shows of one campaign beyond its counts: failures grouped with what
they mean, the sending timeline, the merged rows and the rejected rows.

Read only, on PostgreSQL and SQLite alike. Every query is a GROUP BY or a bounded list
over one campaign's rows, so a campaign of 100k messages costs a few scans of its own
rows. Nothing here shows a phone number whole: identifiers are masked
(``masking.mask``), and so is any run of 7+ digits in the providers' descriptions and
in rejected rows.
"""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from dispatcher.campaigns.inputs import REJECTS, report_sha
from dispatcher.db import Campaign, MergedRow, Message, blobs
from dispatcher.db.bulk import dialect_name
from dispatcher.db.timestamps import aware
from dispatcher.masking import mask
from dispatcher.operations.explanations import Explanation, explain
from dispatcher.resending.planner import IN_DOUBT_PREFIX
from dispatcher.status import FINAL_CAMPAIGN_STATES, MessageStatus

#: Statuses a message ends in without reaching the person (or without us knowing).
NOT_REACHED = (
    MessageStatus.FAILED,
    MessageStatus.EXPIRED,
    MessageStatus.UNKNOWN,
    MessageStatus.CANCELLED,
    MessageStatus.SKIPPED,
)
#: What ``progress`` counts as failed: the timeline's failed curve ends at its figure.
_FAILED = (MessageStatus.FAILED, MessageStatus.EXPIRED)

#: A number as people write it: digits with spaces, dots, dashes, slashes or brackets;
#: a date (and time) as the dispatcher writes them is matched first, and kept.
_NUMBER_LIKE = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2})?)?)|\+?[0-9][0-9 ().\-/]*[0-9]"
)
_MIN_DIGITS = 7


def masked_text(text: str) -> str:
    """``text`` with every number of 7+ digits masked, however written (``+47 912 34
    567``, ``(212) 555-0100``): a phone number in a provider's description or a
    rejected row's cells."""

    def hide(found: re.Match[str]) -> str:
        written = found.group()
        digits = "".join(c for c in written if c.isdigit())
        if found.group("date") or len(digits) < _MIN_DIGITS:
            return written
        return mask(("+" if written.startswith("+") else "") + digits)

    return _NUMBER_LIKE.sub(hide, text)


# -- failures -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FailureGroup:
    """Messages of one outcome: same codes, status and skip reason."""

    result_code: int | None
    whatsapp_error_code: int | None
    status: str  # a MessageStatus, or "in_doubt"
    skip_reason: str | None
    count: int
    sample_description: str | None  # one of the group's result descriptions, masked
    explanation: Explanation

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def failures(session: Session, campaign_id: int) -> list[FailureGroup]:
    """The campaign's messages that did not reach the person, grouped by outcome, the
    largest group first."""
    # A failure the resend planner gave up on after an unanswered request carries no code,
    # only its description (``resending.planner.plan_in_doubt``).
    status = case(
        (
            and_(
                Message.status == MessageStatus.FAILED,
                Message.result_code.is_(None),
                Message.whatsapp_error_code.is_(None),
                # Literal SQL, not parameters: PostgreSQL matches GROUP BY to the select
                # list by text, and two parameters never match.
                Message.result_description.like(literal_column(f"'{IN_DOUBT_PREFIX}%'")),
            ),
            literal_column("'in_doubt'"),
        ),
        else_=Message.status,
    ).label("outcome")
    count = func.count().label("n")
    rows = session.execute(
        select(
            Message.result_code,
            Message.whatsapp_error_code,
            status,
            Message.skip_reason,
            count,
            func.min(Message.result_description),
        )
        .where(Message.campaign_id == campaign_id, Message.status.in_(NOT_REACHED))
        .group_by(Message.result_code, Message.whatsapp_error_code, status, Message.skip_reason)
        .order_by(count.desc(), status, Message.result_code, Message.whatsapp_error_code)
    ).all()
    return [
        FailureGroup(
            result_code=result_code,
            whatsapp_error_code=whatsapp_code,
            status=str(outcome),
            skip_reason=skip_reason,
            count=int(n),
            sample_description=masked_text(sample) if sample else None,
            explanation=explain(result_code, whatsapp_code, str(outcome), skip_reason),
        )
        for result_code, whatsapp_code, outcome, skip_reason, n, sample in rows
    ]


# -- timeline -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TimelinePoint:
    """One interval: messages submitted in it (and their rate), and the totals of
    outcomes reported by its end."""

    start: datetime
    seconds: float  # the interval's length (the last one may be shorter)
    submitted: int
    send_rate: float  # messages submitted per second in the interval
    sent: int  # cumulative from here on
    delivered: int
    read: int
    failed: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"start": self.start.isoformat()}


@dataclass(frozen=True, slots=True)
class Timeline:
    """The campaign's span, from its first submission to now (while it runs) or its
    last event, in equal intervals; no points before anything was submitted."""

    campaign_id: int
    start: datetime | None
    end: datetime | None
    bucket_seconds: float
    points: tuple[TimelinePoint, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "campaign_id": self.campaign_id,
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "bucket_seconds": self.bucket_seconds,
            "points": [p.as_dict() for p in self.points],
        }


def timeline(
    session: Session, campaign_id: int, buckets: int = 60, *, now: datetime | None = None
) -> Timeline:
    """At most ``buckets`` intervals of whole seconds each; one query for the span and
    one GROUP BY per timestamp column, the interval computed by the database."""
    if buckets < 1:
        raise ValueError("buckets must be at least 1")
    empty = Timeline(campaign_id, None, None, 0.0, ())
    state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    if state is None:
        return empty
    mine = Message.campaign_id == campaign_id
    span = session.execute(
        select(
            func.min(Message.submitted_at),
            func.max(Message.submitted_at),
            func.max(Message.sent_at),
            func.max(Message.delivered_at),
            func.max(Message.read_at),
            func.max(Message.failed_at),
        ).where(mine)
    ).one()
    start = aware(span[0])
    if start is None:
        return empty
    if state in FINAL_CAMPAIGN_STATES:
        end = max(aware(t) for t in span if t is not None)
    else:
        end = max(now or datetime.now(UTC), start)
    total = max((end - start).total_seconds(), 1.0)
    width = float(max(1, math.ceil(total / buckets)))
    count = max(1, math.ceil(total / width))

    def per_bucket(column: InstrumentedAttribute[datetime | None], *where: Any) -> list[int]:
        # A subquery: the interval's expression carries parameters, which PostgreSQL
        # cannot match between the select list and GROUP BY.
        inner = (
            select(_bucket(session, column, start, width).label("bucket"))
            .where(mine, column.is_not(None), *where)
            .subquery()
        )
        found = [0] * count
        for bucket, n in session.execute(
            select(inner.c.bucket, func.count()).group_by(inner.c.bucket)
        ):
            found[min(max(int(bucket), 0), count - 1)] += int(n)
        return found

    submitted = per_bucket(Message.submitted_at)
    curves = [
        list(accumulate(per_bucket(Message.sent_at))),
        list(accumulate(per_bucket(Message.delivered_at))),
        list(accumulate(per_bucket(Message.read_at))),
        list(accumulate(per_bucket(Message.failed_at, Message.status.in_(_FAILED)))),
    ]
    points = []
    for i in range(count):
        seconds = max(min(width, total - i * width), 1.0)
        points.append(
            TimelinePoint(
                start=start + timedelta(seconds=i * width),
                seconds=seconds,
                submitted=submitted[i],
                send_rate=round(submitted[i] / seconds, 3),
                sent=curves[0][i],
                delivered=curves[1][i],
                read=curves[2][i],
                failed=curves[3][i],
            )
        )
    return Timeline(campaign_id, start, end, width, tuple(points))


def _bucket(
    session: Session, column: InstrumentedAttribute[datetime | None], start: datetime, width: float
) -> ColumnElement[int]:
    """The interval a timestamp falls in, counted from ``start``: seconds by each
    database's own arithmetic (PostgreSQL: an interval's epoch; SQLite: Julian days of
    the UTC text it stores)."""
    if dialect_name(session) == "postgresql":
        seconds: ColumnElement[Any] = func.extract("epoch", column - start)
        return cast(func.floor(seconds / width), Integer)
    days = func.julianday(column) - func.julianday(literal(start, column.type))
    # Julian days carry ~50 us of float error: to the millisecond, 10 s is 10 s, not
    # 9.99995. Truncation is floor here: a time before ``start`` (a report without a
    # submission) lands in the first interval anyway.
    return cast(func.round(days * 86400.0, 3) / width, Integer)


# -- merged rows ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Merge:
    """A recipients row merged into an earlier one: no message of its own."""

    file: str
    line: int
    kept_file: str
    kept_line: int
    identifiers: tuple[str, ...]  # masked
    description: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"identifiers": list(self.identifiers)}


def merges(session: Session, campaign_id: int, limit: int = 200) -> list[Merge]:
    """The first ``limit`` merged rows, by line (as the outcome report lists them)."""
    rows = session.execute(
        select(
            MergedRow.file,
            MergedRow.line,
            MergedRow.kept_file,
            MergedRow.kept_line,
            MergedRow.identifiers,
            MergedRow.description,
        )
        .where(MergedRow.campaign_id == campaign_id)
        .order_by(MergedRow.line, MergedRow.id)
        .limit(limit)
    )
    return [
        Merge(
            file,
            line,
            kept_file,
            kept_line,
            tuple(mask(i) for i in identifiers or ()),
            masked_text(description),
        )
        for file, line, kept_file, kept_line, identifiers, description in rows
    ]


# -- rejected rows --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RejectRow:
    file: str
    line: int
    reason: str
    values: dict[str, str]  # the row's own columns, long digit runs masked

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Rejects:
    """The first rows of the stored rejects report. ``stored`` is False until
    preparation has written it; ``total`` is the campaign's count of rejected rows."""

    stored: bool
    total: int
    rows: tuple[RejectRow, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "stored": self.stored,
            "total": self.total,
            "rows": [r.as_dict() for r in self.rows],
        }


#: The characters ``reports.safe_cell`` quotes a cell for (a leading ``'``).
_QUOTED = ("'=", "'+", "'-", "'@", "'\t", "'\r")


def rejects(session: Session, campaign_id: int, limit: int = 200) -> Rejects:
    """The rejects report as ``dispatcher rejects`` fetches it (the stored
    ``rejects.csv``), read only as far as ``limit`` rows."""
    total = session.scalar(select(Campaign.rejected).where(Campaign.id == campaign_id)) or 0
    sha = report_sha(session, campaign_id, REJECTS)
    if sha is None:
        return Rejects(False, total, ())
    found: list[RejectRow] = []
    reader = csv.reader(_lines(blobs.chunks(session, sha)))
    header = next(reader, None)
    if header is not None and limit > 0:
        columns = header[3:]
        for cells in reader:
            if len(cells) < 3 or not cells[1].isdigit():
                continue
            values = {
                c: masked_text(_unquoted(v)) for c, v in zip(columns, cells[3:], strict=False)
            }
            found.append(
                RejectRow(cells[0], int(cells[1]), masked_text(_unquoted(cells[2])), values)
            )
            if len(found) >= limit:
                break
    return Rejects(True, total, tuple(found))


def _unquoted(cell: str) -> str:
    return cell[1:] if cell.startswith(_QUOTED) else cell


def _lines(chunks: Iterator[bytes]) -> Iterator[str]:
    """The stored CSV's lines (newline kept, as ``csv`` wants), decoded as they come:
    stopping early reads no further chunk."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    rest = ""
    for chunk in chunks:
        # "\n" only: ``splitlines`` would also cut at characters a cell may hold.
        *lines, rest = (rest + decoder.decode(chunk)).split("\n")
        for line in lines:
            yield line + "\n"
    rest += decoder.decode(b"", final=True)
    if rest:
        yield rest
