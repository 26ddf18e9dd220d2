"""A fan-out slice in the database: claimed before its requests leave, looked at once
more just before they do (pause, cancel, sending window), and its answers recorded in
one transaction (``fanout``).

Claims follow the crash rule of ``batch.send_batch``: a batch this task delivery finds
already claimed by itself was in flight when its worker died, and goes ``in_doubt``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import Text, cast, select, update
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign, Message
from dispatcher.db.bulk import among, dialect_name, packed, update_by_id
from dispatcher.errors import (
    LinkAuthError,
    LinkError,
    LinkInDoubtError,
    LinkRequestError,
    LinkTransientError,
    StorageError,
)
from dispatcher.operations import control
from dispatcher.providers import Answer, Level, Request
from dispatcher.sending import batch_states, care_window
from dispatcher.sending.batch import (
    Outcome,
    SendContext,
    _fail_campaign_of,
    _reject,
    apply_waiting,
    note_answers,
    refused_account,
    slows_sender,
    submitted,
    valid_until,
)
from dispatcher.sending.windows import hold_closed
from dispatcher.status import BatchState, CampaignState, MessageStatus, predecessors
from dispatcher.tracking import apply as tracking

if TYPE_CHECKING:
    from dispatcher.sending.fanout import Fanout

log = logging.getLogger(__name__)
# Core tables, not ORM entities: a slice runs a dozen statements, and the ORM's layers
# over each cost more than the statement itself.
MESSAGES: Any = Message.__table__
BATCHES: Any = Batch.__table__
CAMPAIGNS: Any = Campaign.__table__

#: ``batch.submitted`` as ``update_by_id``'s more assignments (PostgreSQL): the status
#: moves on unless a report already moved it further, the validity counts from the
#: first submission.
_SUBMITTED_SQL = {
    "status": "CASE WHEN t.status IN ({}) THEN '{}' ELSE t.status END".format(
        ", ".join(f"'{s.value}'" for s in predecessors(MessageStatus.SUBMITTED)),
        MessageStatus.SUBMITTED.value,
    ),
    "submitted_at": ":s_now",
    # (Added here, not in SQL: PostgreSQL adds days by the calendar of its time zone.)
    "expires_at": "COALESCE(t.expires_at, :s_expires)",
    "updated_at": ":s_updated",
}


@dataclass(slots=True)
class Sender:
    """One sender's share of a chunk: its batches (id, weight) and their payloads."""

    source: str
    rate: int
    batches: list[tuple[str, int]] = field(default_factory=list)  # (batch id, weight)
    messages: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # read by peek
    campaigns: dict[str, int] = field(default_factory=dict)  # batch id -> campaign id


@dataclass(slots=True)
class Claimed:
    request: Request
    validity: timedelta
    message_ids: list[int]  # in the order of the request's destinations
    campaign_id: int


def hand_back_stopped(
    ctx: SendContext,
    batch_ids: list[str],
    claimed: dict[str, Claimed],
    outcomes: dict[str, Outcome],
) -> list[str]:
    """The last look before requests leave: batches of campaigns no longer sending
    (paused, cancelled) go back to ``pending``, their tries uncounted; returns the rest.
    With the database unreachable the claimed slice is sent (it was claimed live)."""
    campaigns = {claimed[b].campaign_id for b in batch_ids}
    try:
        with ctx.db.session() as session:
            # Share-locked (PostgreSQL) until handed back: a resume committing meanwhile
            # waits, then finds these batches pending and hands them out again.
            states: dict[int, str] = dict(
                session.connection()
                .execute(
                    select(CAMPAIGNS.c.id, CAMPAIGNS.c.state)
                    .where(CAMPAIGNS.c.id.in_(sorted(campaigns)))
                    .with_for_update(read=True)
                )
                .all()
            )
            live = {c for c, state in states.items() if state == CampaignState.SENDING}
            if len(live) == len(campaigns):
                return batch_ids
            stopped = [b for b in batch_ids if claimed[b].campaign_id not in live]
            batch_states.move(session, stopped, BatchState.PENDING,
                              allowed=(BatchState.SUBMITTING,), claimed_by=None,
                              attempts=Batch.attempts - 1)  # fmt: skip
            ids = [m for b in stopped for m in claimed[b].message_ids]
            session.execute(
                update(Message).where(among(session, Message.id, ids)).values(
                    attempts=Message.attempts - 1)
            )  # fmt: skip
            for campaign_id, state in states.items():
                if state == CampaignState.CANCELLED:  # cancelled meanwhile: never sent
                    control.close_cancelled(session, campaign_id)
    except StorageError as exc:
        log.warning("could not check campaign states before sending: %s", exc)
        return batch_ids
    for batch_id in stopped:
        outcomes[batch_id] = Outcome.SKIPPED
        del claimed[batch_id]
    return [b for b in batch_ids if b not in outcomes]


def peek(
    ctx: SendContext,
    fanout: Fanout,
    batch_ids: Sequence[str],
    claimer: str,
    outcomes: dict[str, Outcome],
) -> list[Sender]:
    """The batches that are ours to send, by sender; the rest get their outcome (those
    whose recipients' sending window is closed are held until it opens)."""
    senders: dict[str, Sender] = {}
    with ctx.db.session() as session:
        rows = (
            session.connection()
            .execute(
                select(
                    BATCHES.c.id,
                    BATCHES.c.campaign_id,
                    BATCHES.c.state,
                    BATCHES.c.claimed_by,
                    BATCHES.c.size,
                    # As stored: parsed here once (orjson), not by the driver's json.
                    cast(BATCHES.c.payload, Text).label("payload"),
                    CAMPAIGNS.c.source,
                    CAMPAIGNS.c.rate_per_second,
                    CAMPAIGNS.c.state.label("campaign"),
                )
                .join(CAMPAIGNS, CAMPAIGNS.c.id == BATCHES.c.campaign_id)
                .where(among(session, BATCHES.c.id, list(batch_ids)))
                .order_by(BATCHES.c.seq)
            )
            .all()
        )
        redelivered = [
            r.id for r in rows if r.state == BatchState.SUBMITTING and r.claimed_by == claimer
        ]
        if redelivered:
            # Our own claims, redelivered after the worker died mid-request: the
            # provider may have queued them. Never resend blindly.
            lost = "worker stopped while the request was in flight"
            batch_states.move(session, redelivered, BatchState.IN_DOUBT, error=lost)
        sendable = [
            r for r in rows if r.state == BatchState.PENDING and r.campaign == CampaignState.SENDING
        ]
        held = hold_outside_window(session, fanout, sendable)
    for row in rows:
        if row.id in redelivered:
            outcomes[row.id] = Outcome.IN_DOUBT
        elif (
            row.state != BatchState.PENDING
            or row.campaign != CampaignState.SENDING
            or row.id in held
        ):
            outcomes[row.id] = Outcome.SKIPPED
        else:
            rate = row.rate_per_second or Level.STANDARD.messages_per_second
            sender = senders.setdefault(f"{row.source}/{rate}", Sender(row.source, rate))
            messages = orjson.loads(row.payload)["messages"]
            sender.batches.append((row.id, min(rate, row.size * len(messages))))
            sender.messages[row.id] = messages
            sender.campaigns[row.id] = row.campaign_id
    for batch_id in batch_ids:
        outcomes.setdefault(batch_id, Outcome.SKIPPED)  # unknown ids
    if redelivered:
        apply_waiting(ctx, redelivered)
    return list(senders.values())


def still_in_window(
    ctx: SendContext, fanout: Fanout, part: list[tuple[str, int]], outcomes: dict[str, Outcome]
) -> list[tuple[str, int]]:
    """A chunk can take minutes to send: before each slice, batches whose recipients'
    window closed meanwhile are held (only campaigns with a window pay for the look)."""
    if not fanout.windowed:
        return part
    try:
        with ctx.db.session() as session:
            rows = session.execute(
                select(Batch.id, Batch.campaign_id).where(
                    among(session, Batch.id, [b for b, _ in part])
                )
            ).all()
            held = hold_outside_window(session, fanout, rows)
    except StorageError:
        return part  # the claim will meet the same trouble and say so
    for batch_id in held:
        outcomes[batch_id] = Outcome.SKIPPED
    return [(b, w) for b, w in part if b not in held]


def hold_outside_window(session: Session, fanout: Fanout, rows: Sequence[Any]) -> set[str]:
    windows = {}
    for row in rows:
        window = fanout.spec(session, row.campaign_id).sending_window
        if window is not None:
            windows[row.id] = window.as_tuple()
    return hold_closed(session, windows.items(), datetime.now(UTC))


def claim(
    ctx: SendContext,
    fanout: Fanout,
    sender: Sender,
    batch_ids: list[str],
    claimer: str,
    outcomes: dict[str, Outcome],
) -> dict[str, Claimed]:
    """Claim a slice and build its requests, in one committed transaction."""
    now = datetime.now(UTC)
    claimed: dict[str, Claimed] = {}
    with ctx.db.session() as session:
        ids = packed(batch_ids) if dialect_name(session) == "postgresql" else None
        campaigns = {sender.campaigns[b] for b in batch_ids}
        windowed = any(care_window.needs_window(fanout.spec(session, c)) for c in campaigns)
        if ids is not None and not windowed:
            live, waiting = claim_at_once(session, ids, claimer, now)
        else:
            live, waiting = _claim_in_steps(session, fanout, batch_ids, claimer, now)
        for batch_id in batch_ids:
            if batch_id not in live:  # another delivery's, or its campaign stopped
                outcomes[batch_id] = Outcome.SKIPPED
        if not live:
            return claimed
        empty = [batch_id for batch_id in live if not waiting.get(batch_id)]
        if empty:
            nothing_left = "every message was settled before its turn"
            batch_states.move(session, empty, BatchState.SKIPPED, error=nothing_left)
            outcomes.update(dict.fromkeys(empty, Outcome.SKIPPED))
        provider = ctx.client
        fresh: dict[int, datetime | None] = {}  # a first submission's validity, per campaign
        for batch_id, campaign_id in live.items():
            messages = waiting.get(batch_id)
            if not messages:
                continue
            spec = fanout.spec(session, campaign_id)
            expiries = [e for _, _, e in messages if e is not None]
            if expiries:  # a resend keeps the validity of its first submission
                expiry = min(e.replace(tzinfo=e.tzinfo or UTC) for e in expiries)
                until = valid_until(spec, expiry)
            elif campaign_id in fresh:
                until = fresh[campaign_id]
            else:
                until = fresh[campaign_id] = valid_until(spec, None)
            request = provider.request(
                spec, batch_id, [destination for _, destination, _ in messages],
                sender.messages[batch_id], valid_until=until,
                event_report_gate=ctx.event_report_gate, campaign_id=campaign_id,
            )  # fmt: skip
            claimed[batch_id] = Claimed(
                request, spec.validity, [m for m, _, _ in messages], campaign_id
            )
    return claimed


_Waiting = dict[str, list[tuple[int, str, datetime | None]]]


def claim_at_once(
    session: Session, packed_ids: str, claimer: str, now: datetime
) -> tuple[dict[str, int], _Waiting]:
    """``_claim_in_steps`` in one statement (PostgreSQL, no care window to judge): the
    slice's pending batches of sending campaigns claimed, their waiting messages read
    and counted. A slice is one round trip, not four. Returns the batches claimed (batch
    id -> campaign id) and their waiting messages in request order."""
    rows = batch_states.claim_counting(session, packed_ids, claimer, now)
    live: dict[str, int] = {}
    waiting: _Waiting = {}
    positions: list[dict[str, Any]] = []
    for batch_id, campaign_id, message_id, destination, expires_at, position, kind in rows:
        if kind == 0:
            live[batch_id] = campaign_id
            continue
        if kind == 2:  # settled meanwhile: drops out of the request
            positions.append({"id": message_id, "position": None})
            continue
        mine = waiting.setdefault(batch_id, [])
        if position != len(mine):
            positions.append({"id": message_id, "position": len(mine)})
        mine.append((message_id, destination, expires_at))
    update_by_id(session, MESSAGES, positions)
    return live, waiting


def _claim_in_steps(
    session: Session,
    fanout: Fanout,
    batch_ids: list[str],
    claimer: str,
    now: datetime,
) -> tuple[dict[str, int], _Waiting]:
    """Claim the slice's batches, hand back those whose campaign stopped, skip people
    whose care window closed, and read the waiting messages: ``claim_at_once`` step by
    step (SQLite; a campaign that judges care windows)."""
    ours = batch_states.claim(session, batch_ids, claimer, now)
    if not ours:
        return {}, {}
    batches = (
        session.connection()
        .execute(
            select(BATCHES.c.id, CAMPAIGNS.c.id.label("campaign_id"), CAMPAIGNS.c.state)
            .join(CAMPAIGNS, CAMPAIGNS.c.id == BATCHES.c.campaign_id)
            .where(among(session, BATCHES.c.id, sorted(ours)))
        )
        .all()
    )
    stopped = [b.id for b in batches if b.state != CampaignState.SENDING]
    if stopped:  # stopped while we waited: hand them back, the try uncounted
        batch_states.move(session, stopped, BatchState.PENDING, claimed_by=None,
                          attempts=Batch.attempts - 1)  # fmt: skip
    live = {b.id: b.campaign_id for b in batches if b.state == CampaignState.SENDING}
    # A care window that closed since preparation: its person is skipped, not sent.
    care_window.skip_closed(
        session, live, lambda campaign_id: fanout.spec(session, campaign_id)
    )  # fmt: skip
    return live, waiting_messages(session, list(live))


def waiting_messages(
    session: Session, batch_ids: list[str]
) -> dict[str, list[tuple[int, str, datetime | None]]]:
    """Each batch's messages still waiting, numbered in request order; messages settled
    meanwhile (a late report for an earlier attempt) drop out of the request."""
    if not batch_ids:
        return {}
    m = MESSAGES.c
    rows = (
        session.connection()
        .execute(
            select(m.id, m.batch_id, m.destination, m.expires_at, m.status, m.position)
            .where(among(session, m.batch_id, batch_ids))
            .order_by(m.batch_id, m.position, m.id)
        )
        .all()
    )
    waiting: dict[str, list[tuple[int, str, datetime | None]]] = {}
    positions: list[dict[str, Any]] = []
    for row in rows:
        if row.status != MessageStatus.QUEUED:
            if row.position is not None:
                positions.append({"id": row.id, "position": None})
            continue
        mine = waiting.setdefault(row.batch_id, [])
        if row.position != len(mine):
            positions.append({"id": row.id, "position": len(mine)})
        mine.append((row.id, row.destination, row.expires_at))
    update_by_id(session, MESSAGES, positions)
    counted = [m for messages in waiting.values() for m, _, _ in messages]
    # Counted when the request is about to leave: an unanswered one counts too.
    session.connection().execute(
        update(MESSAGES).where(among(session, m.id, counted)).values(attempts=m.attempts + 1)
    )
    return waiting


def record_answers(
    ctx: SendContext,
    sender: Sender,
    results: dict[str, Answer | LinkError],
    claimed: dict[str, Claimed],
    outcomes: dict[str, Outcome],
) -> None:
    """Record a slice's answers: ids stored, failures judged, all in bulk."""
    answered = {b: r for b, r in results.items() if not isinstance(r, LinkError)}
    retry = [b for b, r in results.items() if isinstance(r, LinkTransientError)]
    doubt = [b for b, r in results.items() if isinstance(r, LinkInDoubtError)]
    refused = {b: r for b, r in results.items() if isinstance(r, LinkRequestError | LinkAuthError)}
    now = datetime.now(UTC)
    settled = list(answered) + doubt
    source = sender.source
    with ctx.db.session() as session:
        if answered:
            record(session, answered, claimed, now, source)
        # Rare (a report tried while its batch was in doubt): the applier keeps the
        # reports of a request in flight untried until its answer is stored.
        unmatched = bool(settled) and tracking.any_unmatched(session, settled)
        if retry:  # nothing left our side: claimable again, the try does not count
            released = batch_states.move(
                session, retry, BatchState.PENDING, allowed=(BatchState.SUBMITTING,),
                error=str(results[retry[0]]),
            )  # fmt: skip
            ids = [m for b in released for m in claimed[b].message_ids]
            session.execute(
                update(Message).where(among(session, Message.id, ids)).values(
                    attempts=Message.attempts - 1)
            )  # fmt: skip
        if doubt:
            batch_states.move(session, doubt, BatchState.IN_DOUBT, error=str(results[doubt[0]]))
    outcomes.update(dict.fromkeys(answered, Outcome.SUBMITTED))
    outcomes.update(dict.fromkeys(retry, Outcome.RETRY))
    outcomes.update(dict.fromkeys(doubt, Outcome.IN_DOUBT))
    throttled = [claimed[b].request for b in retry if slows_sender(results[b])]  # type: ignore[arg-type]
    if throttled:  # throttled at the gateway: slow the sender, by how much it turned away
        turned_away = sum(len(r.destinations) * len(r.messages) for r in throttled)
        with contextlib.suppress(StorageError):
            ctx.throttle.penalise(source, turned_away, sender.rate)
    for batch_id, error in refused.items():  # rare: one by one
        _reject(ctx.db, batch_id, error)  # type: ignore[arg-type]
        outcomes[batch_id] = Outcome.REJECTED
        if isinstance(error, LinkAuthError):
            _fail_campaign_of(
                ctx.db, batch_id, refused_account(ctx, claimed[batch_id].request, error)
            )
    if unmatched:
        apply_waiting(ctx, settled)  # reports tried before these commits


def record(
    session: Session,
    answered: dict[str, Answer],
    claimed: dict[str, Claimed],
    now: datetime,
    source: str | None = None,
) -> None:
    """Store each message id on its message (ids mirror the destinations' order)."""
    by_code: dict[int | None, list[str]] = {}  # one code in practice
    for batch_id, answer in answered.items():
        by_code.setdefault(answer.result_code, []).append(batch_id)
    for result_code, batch_ids in by_code.items():
        batch_states.submitted(session, batch_ids, now, result_code)
    by_validity: dict[timedelta, list[dict[str, Any]]] = {}  # one validity in practice
    for batch_id, response in answered.items():
        by_validity.setdefault(claimed[batch_id].validity, []).extend(
            {"id": message_id, "link_message_id": link_id}
            for message_id, link_id in zip(
                claimed[batch_id].message_ids, response.message_ids, strict=True
            )
        )
    postgres = dialect_name(session) == "postgresql"
    for validity, rows in by_validity.items():
        if postgres:  # the ids and the submission in one new version of each row
            values = {"s_now": now, "s_expires": now + validity, "s_updated": datetime.now(UTC)}
            update_by_id(session, MESSAGES, rows, _SUBMITTED_SQL, values)
            continue
        update_by_id(session, MESSAGES, rows)
        session.connection().execute(
            update(MESSAGES).where(among(session, MESSAGES.c.id, [r["id"] for r in rows]))
            .values(submitted(now, validity))
        )  # fmt: skip
    note_answers(
        session,
        [
            (claimed[batch_id].message_ids[0], claimed[batch_id].request.destinations[0], answer)
            for batch_id, answer in answered.items()
            if len(claimed[batch_id].message_ids) == 1
        ],
        source,
    )
