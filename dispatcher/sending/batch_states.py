"""Every change of a batch's state, in one module (ARCHITECTURE: each state machine has
one module that changes it).

A batch is one request to the provider; its id is the request's ``refId``::

    pending -> submitting -> submitted
       |  ^        |-> in_doubt (no answer: settled by reports, never resent blindly)
       |  '--------'   (handed back: nothing left our side, or its campaign stopped)
       |-> held -> pending (a sending window or the messaging tier)
       |-> waiting -> pending (or held) once the canary before it is judged good, or
       |              the operator resumes its campaign; skipped on a cancel
       |-> rejected (the provider refused it; retries exhausted)
       '-> skipped (nothing left to send; campaign cancelled)

Each change is a conditional UPDATE where others may race for the batch (two task
deliveries, the sweep, a command): the row count, or the ids RETURNING gives back,
says who won.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Table, case, select, text, update
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign
from dispatcher.db.bulk import among, any_packed
from dispatcher.status import BatchState, CampaignState, MessageStatus

_BATCHES: Table = Batch.__table__  # type: ignore[assignment]

#: How much of an error a batch keeps.
ERROR_CHARS = 2000


def move(
    session: Session,
    batch_ids: Collection[str],
    to: BatchState,
    *,
    allowed: Iterable[BatchState] | None = None,
    error: str | None = None,
    **values: Any,
) -> list[str]:
    """Move ``batch_ids`` to ``to`` (from one of ``allowed``, when given), with an
    ``error`` and other column ``values``; returns the ids that moved."""
    if not batch_ids:
        return []
    if error is not None:
        values["error"] = error[:ERROR_CHARS]
    # A Core statement: the ORM's bulk UPDATE costs more than the statement itself on
    # the send path (twice a request). Batches loaded in the session are expired.
    query = update(_BATCHES).where(among(session, _BATCHES.c.id, batch_ids))
    if allowed is not None:
        query = query.where(_BATCHES.c.state.in_(tuple(allowed)))
    moved = list(
        session.connection().execute(query.values(state=to, **values).returning(_BATCHES.c.id))
    )
    ids = [row[0] for row in moved]
    expire(session, ids)
    return ids


def expire(session: Session, batch_ids: Collection[str]) -> None:
    """Batches of these ids loaded in the session are read again when next used."""
    if not session.identity_map:
        return
    wanted = set(batch_ids)
    for held in list(session.identity_map.values()):
        if isinstance(held, Batch) and held.id in wanted:
            session.expire(held)


def claim(session: Session, batch_ids: Collection[str], claimer: str, now: datetime) -> set[str]:
    """pending -> submitting, before the request leaves, for this task delivery; the ids
    it won (another delivery claims a batch at most once)."""
    allowed = (BatchState.PENDING,)
    claimed = move(session, batch_ids, BatchState.SUBMITTING, allowed=allowed,
                   claimed_by=claimer, attempts=_BATCHES.c.attempts + 1,
                   submitting_at=now)  # fmt: skip
    return set(claimed)


#: ``claim_counting``'s statement. The sending campaigns are a list read first, not a
#: join, and messages are looked up by the slice's ids too: batches and messages are
#: found through their indexes whatever the planner knows of the tables. ``placed``:
#: messages of the slice settled meanwhile that still hold a place in their request.
_CLAIM_COUNTING = text(
    f"""
WITH claimed AS (
    UPDATE batches AS b
    SET state = '{BatchState.SUBMITTING.value}', claimed_by = :claimer,
        attempts = b.attempts + 1, submitting_at = :now
    WHERE b.id = {any_packed("ids", "VARCHAR")}
      AND b.state = '{BatchState.PENDING.value}'
      AND b.campaign_id = ANY (ARRAY(
          SELECT id FROM campaigns WHERE state = '{CampaignState.SENDING.value}'))
    RETURNING b.id, b.campaign_id
), counted AS (
    UPDATE messages AS m SET attempts = m.attempts + 1
    WHERE m.batch_id = {any_packed("ids", "VARCHAR")}
      AND m.batch_id IN (SELECT id FROM claimed)
      AND m.status = '{MessageStatus.QUEUED.value}'
    RETURNING m.id, m.batch_id, m.destination, m.expires_at, m.position
), placed AS (
    SELECT m.id, m.batch_id, m.position FROM messages AS m
    WHERE m.batch_id = {any_packed("ids", "VARCHAR")}
      AND m.batch_id IN (SELECT id FROM claimed)
      AND m.status <> '{MessageStatus.QUEUED.value}' AND m.position IS NOT NULL
)
SELECT id, campaign_id, NULL, NULL, NULL, NULL, 0 FROM claimed
UNION ALL
SELECT batch_id, NULL, id, destination, expires_at, position, 1 FROM counted
UNION ALL
SELECT batch_id, NULL, id, NULL, NULL, position, 2 FROM placed
ORDER BY 1, 6, 3
"""
)


def claim_counting(session: Session, packed_ids: str, claimer: str, now: datetime) -> Sequence[Any]:
    """``claim`` (PostgreSQL, ``packed_ids`` from ``bulk.packed``) of the batches whose
    campaign is sending, and in the same statement each claimed batch's queued messages
    counted a try and read. Rows of (batch id, campaign id, message id, destination,
    expires_at, position, kind), by batch, then position: kind 0 for each batch claimed
    (campaign id only), 1 for each of its queued messages (no campaign id), 2 for each of
    its messages settled meanwhile that still holds a place in the request (message id
    and position only). A slice's claim is one round trip, not four. (A message settled
    by a transaction that commits while this statement waits for its row is neither
    counted nor found settled, ``placed`` reading the statement's snapshot: it keeps
    its place, and the request is built from the messages counted.)"""
    rows = (
        session.connection()
        .execute(_CLAIM_COUNTING, {"ids": packed_ids, "claimer": claimer, "now": now})
        .all()
    )
    expire(session, {row[0] for row in rows})
    return rows


def mark(batch: Batch, to: BatchState, error: str | None = None) -> None:
    """Change a batch row already loaded (and locked by its claim) in the session."""
    batch.state = to
    if error is not None:
        batch.error = error[:ERROR_CHARS]


def submitted(
    session: Session, batch_ids: Collection[str], now: datetime, result_code: int | None
) -> list[str]:
    """The provider took the requests (an in-doubt batch settled by a late answer too)."""
    allowed = (BatchState.SUBMITTING, BatchState.IN_DOUBT)
    return move(session, batch_ids, BatchState.SUBMITTED, allowed=allowed, submitted_at=now,
                result_code=result_code)  # fmt: skip


def stale_in_doubt(session: Session, now: datetime, stale_after: timedelta) -> int:
    """Batches claimed so long ago that their worker is lost: in doubt."""
    moved = session.execute(
        update(Batch)
        .where(Batch.state == BatchState.SUBMITTING, Batch.submitting_at < now - stale_after)
        .values(state=BatchState.IN_DOUBT, error="no answer recorded; worker lost?")
    ).rowcount  # type: ignore[attr-defined]
    return int(moved)


def hold(session: Session, batch_ids: Collection[str], opens: datetime) -> list[str]:
    """Pending batches wait for ``opens`` (their recipients' sending window, the tier)."""
    allowed = (BatchState.PENDING,)
    return move(session, batch_ids, BatchState.HELD, allowed=allowed, not_before=opens)


def release_due(session: Session, now: datetime) -> list[str]:
    """Held batches of sending campaigns whose time has come: pending again."""
    return list(
        session.scalars(
            update(Batch)
            .where(
                Batch.state == BatchState.HELD,
                Batch.not_before <= now,
                Batch.campaign_id.in_(
                    select(Campaign.id).where(Campaign.state == CampaignState.SENDING)
                ),
            )
            .values(state=BatchState.PENDING)
            .returning(Batch.id)
        )
    )


def close_for_cancel(session: Session, campaign_id: int) -> None:
    """A cancelled campaign's batches that never left are closed."""
    session.execute(
        update(Batch)
        .where(
            Batch.campaign_id == campaign_id,
            Batch.state.in_((BatchState.PENDING, BatchState.HELD, BatchState.WAITING)),
        )
        .values(state=BatchState.SKIPPED, error="campaign cancelled")
    )


def release_waiting(session: Session, campaign_id: int, now: datetime) -> list[str]:
    """A campaign's batches held behind its canary go: pending, or held when the
    messaging tier holds them for a later day still; returns the pending ones, in
    order, to be handed to the send queue."""
    later = Batch.not_before.is_not(None) & (Batch.not_before > now)
    rows = session.execute(
        update(Batch)
        .where(Batch.campaign_id == campaign_id, Batch.state == BatchState.WAITING)
        .values(state=case((later, BatchState.HELD), else_=BatchState.PENDING))
        .returning(Batch.id, Batch.seq, Batch.state)
    ).all()
    return [r.id for r in sorted(rows, key=lambda r: r.seq) if r.state == BatchState.PENDING]


def handed_out(session: Session, batch_ids: Collection[str], now: datetime) -> None:
    """Stamped when queued for a send task (the lost-task net reads it); not a state."""
    session.connection().execute(
        update(_BATCHES).where(among(session, _BATCHES.c.id, batch_ids)).values(handed_out_at=now)
    )
