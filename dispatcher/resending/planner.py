"""Resends: plan them by retry class, cut them into batches when due, expire the rest.

Runs periodically (``workers.tasks.resend_due``) and on demand (``dispatcher resend``).
Every step is a conditional UPDATE on the message's current state, so a report that
arrives meanwhile wins: a message delivered in the meantime is never sent again.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns import lifecycle
from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Batch, Campaign, Message
from dispatcher.db.timestamps import aware
from dispatcher.resending.policy import BSUID_NOT_ALLOWED, RetryClass, retry_class
from dispatcher.sending import batch_states
from dispatcher.status import BatchState, CampaignState, MessageStatus

log = logging.getLogger(__name__)
_CHUNK = 1000
# A batch still 'submitting' this long after its claim lost its worker mid-request.
STALE_SUBMITTING = timedelta(minutes=5)
# A batch still 'pending' this long after it was queued, in a campaign that claimed
# nothing for as long, lost its task (the broker's visibility timeout: a task a dead
# worker held is handed out again by then).
LOST_TASK = timedelta(hours=1)
IN_DOUBT_NOTE = "resent: no report within the window after an unanswered request"
#: How a message left in doubt is described (the console explains it by this start).
IN_DOUBT_PREFIX = "in doubt:"
IN_DOUBT_FAILED = f"{IN_DOUBT_PREFIX} the request got no answer and no report came"
TO_PHONE_NOTE = "resent to the phone number: the BSUID is not allowed for this message (131062)"


@dataclass(frozen=True, slots=True)
class Waits:
    """Time rules, shortened only in tests and rehearsals."""

    min_delay: timedelta | None = None  # None: each campaign's resend.min_delay_minutes
    stale_submitting: timedelta = STALE_SUBMITTING
    lost_task: timedelta = LOST_TASK


def _specs(session: Session, campaign_ids: Iterable[int]) -> dict[int, CampaignSpec]:
    ids = list(set(campaign_ids))
    rows = session.execute(select(Campaign.id, Campaign.spec).where(Campaign.id.in_(ids)))
    return {campaign_id: CampaignSpec.model_validate(spec) for campaign_id, spec in rows}


def mark_stale_in_doubt(session: Session, waits: Waits, now: datetime) -> int:
    """A batch claimed long ago and still 'submitting' lost its worker: it is in doubt."""
    return batch_states.stale_in_doubt(session, now, waits.stale_submitting)


def lost_batches(session: Session, waits: Waits, now: datetime) -> list[str]:
    """Pending batches of a stalled campaign whose send task is gone, to queue again.

    A task can vanish without Celery bringing it back: acknowledged after it failed on a
    broker outage, or lost with a broker that kept nothing. Its batches stay ``pending``.
    A batch counts as lost when it was handed out more than ``lost_task`` ago and its
    campaign has claimed nothing for as long: a long queue still moving is left alone.
    Queueing a batch again is safe anyway, since it is claimed once however many tasks
    carry it.
    """
    cutoff = now - waits.lost_task
    waiting = (
        Batch.state == BatchState.PENDING,
        func.coalesce(Batch.handed_out_at, Batch.created_at) < cutoff,
    )
    candidates = session.scalars(
        select(Batch.campaign_id)
        .join(Campaign, Campaign.id == Batch.campaign_id)
        .where(Campaign.state == CampaignState.SENDING, *waiting)
        .distinct()
    ).all()
    lost: list[str] = []
    for campaign_id in candidates:
        last_claim = aware(
            session.scalar(
                select(func.max(Batch.submitting_at)).where(Batch.campaign_id == campaign_id)
            )
        )
        if last_claim is not None and last_claim >= cutoff:
            continue  # still moving: its tasks are queued behind others
        lost += session.scalars(
            select(Batch.id)
            .where(Batch.campaign_id == campaign_id, *waiting)
            .order_by(Batch.seq)
            .limit(_CHUNK * 10 - len(lost))
        )
        if len(lost) >= _CHUNK * 10:
            break
    return lost


def plan(session: Session, waits: Waits, now: datetime) -> int:
    """Judge each new failure once: its retry class, and its next attempt time if any."""
    rows = session.execute(
        select(
            Message.id,
            Message.campaign_id,
            Message.whatsapp_error_code,
            Message.result_code,
            Message.attempts,
            Message.submitted_at,
            Message.failed_at,
            Message.expires_at,
            Message.destination,
            Message.identifiers,
            Message.rerouted_from,
        )
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(
            Message.status == MessageStatus.FAILED,
            # Spelled out for ``ix_messages_unjudged_failures``: every failure has it.
            Message.failed_at.is_not(None),
            Message.retry_class.is_(None),
            # Submitted, or refused with WhatsApp's own code (a Meta send refused
            # outright, e.g. 131062): the table judges both alike.
            or_(Message.submitted_at.is_not(None), Message.whatsapp_error_code.is_not(None)),
            Campaign.state == CampaignState.SENDING,
        )
        .limit(_CHUNK)
    ).all()
    specs = _specs(session, (r.campaign_id for r in rows))
    planned = 0
    for row in rows:
        policy = specs[row.campaign_id].resend
        if _to_phone(session, row, policy.enabled, now):
            planned += 1
            continue
        kind = retry_class(row.whatsapp_error_code, row.result_code)
        at = policy.next_attempt(
            kind=kind,
            attempts=row.attempts,
            submitted_at=aware(row.submitted_at) or now,
            failed_at=aware(row.failed_at) or now,
            expires_at=aware(row.expires_at),
            min_delay=waits.min_delay,
        )
        # A failure with no attempt left is final for this campaign: the class says why.
        values: dict[str, Any] = {"retry_class": kind if at else RetryClass.FINAL}
        if at is not None:
            values["next_attempt_at"] = at
            planned += 1
        session.execute(
            update(Message)
            .where(Message.id == row.id, Message.status == MessageStatus.FAILED)
            .values(**values)
        )
    return planned


def _to_phone(session: Session, row: Any, enabled: bool, now: datetime) -> bool:
    """131062 for a BSUID of a person whose phone number is known: the message goes
    once more, now, to the number (a report came, so LINK's 15 minutes do not apply).
    The BSUID is kept (``rerouted_from``): status counts these, the report says it."""
    if row.whatsapp_error_code != BSUID_NOT_ALLOWED or row.rerouted_from is not None:
        return False
    phone = next((i for i in row.identifiers or () if i.startswith("+")), None)
    if not enabled or phone is None or row.destination.startswith("+"):
        return False
    expires_at = aware(row.expires_at)
    if expires_at is not None and now >= expires_at:
        return False
    session.execute(
        update(Message)
        .where(Message.id == row.id, Message.status == MessageStatus.FAILED)
        .values(
            destination=phone,
            rerouted_from=row.destination,
            retry_class=RetryClass.TO_PHONE,
            next_attempt_at=now,
            result_description=TO_PHONE_NOTE,
        )
    )
    return True


def plan_in_doubt(session: Session, waits: Waits, now: datetime) -> int:
    """Silent messages of an unanswered request: resend once the window has passed.

    DLRs carrying the batch's refId settle the others (``tracking``); only those still
    without any report are sent again, and their report line says so.
    """
    rows = session.execute(
        select(Message.id, Message.campaign_id, Batch.submitting_at, Message.attempts)
        .join(Batch, Batch.id == Message.batch_id)
        .where(
            Batch.state == BatchState.IN_DOUBT,
            Message.status == MessageStatus.QUEUED,
            Message.link_message_id.is_(None),
            Message.next_attempt_at.is_(None),
        )
        .limit(_CHUNK)
    ).all()
    specs = _specs(session, (r.campaign_id for r in rows))
    planned = 0
    for row in rows:
        policy = specs[row.campaign_id].resend
        window = waits.min_delay or timedelta(minutes=policy.min_delay_minutes)
        claimed = aware(row.submitting_at) or now
        if now < claimed + window:
            continue
        if not policy.enabled or row.attempts >= policy.in_doubt_max_attempts:
            session.execute(
                update(Message)
                .where(Message.id == row.id, Message.status == MessageStatus.QUEUED)
                .values(
                    status=MessageStatus.FAILED,
                    result_description=IN_DOUBT_FAILED,
                    failed_at=now,
                )
            )
            continue
        session.execute(
            update(Message)
            .where(Message.id == row.id, Message.status == MessageStatus.QUEUED)
            .values(next_attempt_at=now, result_description=IN_DOUBT_NOTE)
        )
        planned += 1
    return planned


def expire(session: Session, now: datetime) -> int:
    """Messages waiting for a (re)send past their validity are expired, never sent.

    A message already with LINK is left to LINK's own report.
    """
    # Each arm spelled for its partial index: only a message submitted once has a
    # validity, so a queued one past it is a resend (a previous messageId, none now).
    waiting = or_(
        (Message.status == MessageStatus.QUEUED)
        & Message.previous_link_message_id.is_not(None)
        & Message.link_message_id.is_(None),
        (Message.status == MessageStatus.FAILED) & Message.next_attempt_at.is_not(None),
    )
    return int(
        session.execute(
            update(Message)
            .where(Message.expires_at < now, waiting)
            .values(status=MessageStatus.EXPIRED, next_attempt_at=None)
        ).rowcount  # type: ignore[attr-defined]
    )


def cut_due(session: Session, now: datetime, batch_size: int = 50) -> list[str]:
    """Put every message whose resend is due into new batches; returns their ids.

    A message moves from ``failed`` (or an in-doubt ``queued``) to ``queued`` in a new
    batch; its last messageId is kept as ``previous_link_message_id`` so a late report
    for that attempt is still understood.
    """
    rows = session.execute(
        select(Message.id, Message.campaign_id, Message.batch_id, Message.status)
        .join(Campaign, Campaign.id == Message.campaign_id)
        .where(
            Message.next_attempt_at <= now,
            Message.status.in_((MessageStatus.FAILED, MessageStatus.QUEUED)),
            Campaign.state == CampaignState.SENDING,
        )
        .order_by(Message.campaign_id, Message.batch_id, Message.id)
        .limit(_CHUNK)
    ).all()
    if not rows:
        return []
    payloads: dict[str, Any] = dict(
        session.execute(
            select(Batch.id, Batch.payload).where(Batch.id.in_({r.batch_id for r in rows}))
        ).all()
    )
    rates = dict(
        session.execute(
            select(Campaign.id, Campaign.rate_per_second).where(
                Campaign.id.in_({r.campaign_id for r in rows})
            )
        ).all()
    )
    groups: dict[tuple[int, str], list[Any]] = defaultdict(list)
    for row in rows:
        groups[(row.campaign_id, str(row.batch_id))].append(row)
    created: list[str] = []
    for (campaign_id, old_batch), members in groups.items():
        size = min(batch_size, rates.get(campaign_id) or 80)
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            batch_id = _next_batch_id(session, campaign_id)
            session.add(
                Batch(
                    id=batch_id,
                    campaign_id=campaign_id,
                    seq=_seq(batch_id),
                    state=BatchState.PENDING,
                    payload=payloads[old_batch],
                    size=len(chunk),
                )
            )
            session.flush()
            moved = 0
            for position, row in enumerate(chunk):
                moved += session.execute(
                    update(Message)
                    .where(
                        Message.id == row.id,
                        Message.status == row.status,
                        Message.next_attempt_at.is_not(None),
                    )
                    .values(
                        status=MessageStatus.QUEUED,
                        batch_id=batch_id,
                        position=position,
                        previous_link_message_id=Message.link_message_id,
                        link_message_id=None,
                        next_attempt_at=None,
                        retry_class=None,
                    )
                ).rowcount  # type: ignore[attr-defined]
            if moved:
                created.append(batch_id)
            else:
                batch_states.move(session, [batch_id], BatchState.SKIPPED)
    return created


def _next_batch_id(session: Session, campaign_id: int) -> str:
    highest = session.scalar(select(func.max(Batch.seq)).where(Batch.campaign_id == campaign_id))
    return f"c{campaign_id}-b{(highest or 0) + 1:06d}"


def _seq(batch_id: str) -> int:
    return int(batch_id.rsplit("-b", 1)[1])


def request_resend(
    session: Session, campaign_id: int, codes: set[int] | None, now: datetime
) -> int:
    """``dispatcher resend``: plan failed messages again now (15 min after submission).

    Without ``codes``, the retryable failures; with them, failures whose LINK result code
    or WhatsApp code is listed (even final ones, by the operator's choice).
    Delivered, read and expired messages are never touched.
    """
    rows = session.execute(
        select(
            Message.id,
            Message.whatsapp_error_code,
            Message.result_code,
            Message.submitted_at,
        ).where(
            Message.campaign_id == campaign_id,
            Message.status == MessageStatus.FAILED,
            Message.next_attempt_at.is_(None),
        )
    ).all()
    spec = _specs(session, [campaign_id]).get(campaign_id)
    if spec is None:
        return 0
    floor = timedelta(minutes=spec.resend.min_delay_minutes)
    chosen = 0
    for row in rows:
        if codes is None:
            wanted = retry_class(row.whatsapp_error_code, row.result_code) is not RetryClass.FINAL
        else:
            wanted = bool({row.whatsapp_error_code, row.result_code} & codes)
        if not wanted:
            continue
        submitted = aware(row.submitted_at) or now
        session.execute(
            update(Message)
            .where(Message.id == row.id, Message.status == MessageStatus.FAILED)
            .values(next_attempt_at=max(now, submitted + floor), retry_class="on_request")
        )
        chosen += 1
    lifecycle.reopen(session, campaign_id)
    return chosen


def run_due(session: Session, waits: Waits | None = None) -> list[str]:
    """One pass of the periodic task; returns the new batches to send."""
    waits = waits or Waits()
    now = datetime.now(UTC)
    mark_stale_in_doubt(session, waits, now)
    plan(session, waits, now)
    plan_in_doubt(session, waits, now)
    expire(session, now)
    return cut_due(session, now) + lost_batches(session, waits, now)
