"""Pause, resume and cancel a campaign: a conditional UPDATE of its state that every
worker sees.

Workers read the campaign's state when they claim a slice and again just before its
requests leave (``fanout``), so no request of a paused or cancelled campaign starts
later than one slice (a tenth of a second) after the command; requests already on
the wire are answered and recorded as usual. Batches the workers skipped meanwhile
stay ``pending``: ``resume`` hands them out again (with the batches waiting behind a
canary, and a preparation a worker gave up while the campaign was paused), ``cancel``
closes them (and the waiting ones), and its people's messages end
``cancelled`` (never sent) so the report names them; requests handed back after a
cancel are closed the same way by the periodic sweep (``close_stranded``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete as delete_rows
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns import lifecycle
from dispatcher.db import Batch, Campaign, Message
from dispatcher.errors import DispatcherError
from dispatcher.guardrails import canary
from dispatcher.sending import batch_states
from dispatcher.status import BatchState, CampaignState, MessageStatus

PAUSABLE = (CampaignState.SENDING,)
CANCELLABLE = (
    CampaignState.DRAFT,
    CampaignState.SCHEDULED,
    CampaignState.PREPARING,
    CampaignState.SENDING,
    CampaignState.PAUSED,
)
CANCELLED_REASON = "campaign cancelled before this message was sent"
#: Deletable when nothing of it ever left: previews, campaigns that never started, or
#: that failed or were cancelled before their first request.
DELETABLE = (
    CampaignState.PREVIEWED,
    CampaignState.DRAFT,
    CampaignState.SCHEDULED,
    CampaignState.FAILED,
    CampaignState.CANCELLED,
)
_LEFT = (BatchState.SUBMITTING, BatchState.SUBMITTED, BatchState.IN_DOUBT, BatchState.REJECTED)


def pause(session: Session, campaign_id: int) -> None:
    """Stop handing out requests; what is on the wire finishes."""
    _move(session, campaign_id, PAUSABLE, CampaignState.PAUSED, "pause")


@dataclass(frozen=True, slots=True)
class Resumed:
    batch_ids: list[str]  # pending: for the send queue
    prepare_again: bool  # paused before its preparation finished: prepare resumes it
    canary_waits: bool = False  # people still wait behind a canary not judged yet


def resume(session: Session, campaign_id: int) -> Resumed:
    """Open a paused campaign again; what it still has to send goes back to the queue.

    Also accepted for a campaign already sending, to hand its pending batches out again
    (say, when the broker was down at the first try): a batch queued twice is still sent
    once, since sending claims it with a conditional UPDATE.
    """
    # Signals are judged afresh from now: the operator saw what paused it. A campaign
    # still sending (its batches handed out again) keeps its window as it is.
    now = datetime.now(UTC)
    if not lifecycle.move(session, campaign_id, (CampaignState.PAUSED,), CampaignState.SENDING,
                          paused_by=None, guard_since=now,
                          **_standing_state_noted(session, campaign_id)):  # fmt: skip
        _move(session, campaign_id, (CampaignState.PAUSED, CampaignState.SENDING),
              CampaignState.SENDING, "resume")  # fmt: skip
    # After a canary's own pause, the people held behind it go too (the operator's call);
    # a canary not judged yet keeps them.
    canary.resumed(session, campaign_id, now)
    pending = list(
        session.scalars(
            select(Batch.id)
            .where(Batch.campaign_id == campaign_id, Batch.state == BatchState.PENDING)
            .order_by(Batch.seq)
        )
    )
    prepared = session.scalar(select(Campaign.prepared_at).where(Campaign.id == campaign_id))
    waits = session.scalar(
        select(Batch.id)
        .where(Batch.campaign_id == campaign_id, Batch.state == BatchState.WAITING)
        .limit(1)
    )
    return Resumed(pending, prepared is None, waits is not None)


#: A guardrail's pause for a standing state of the number, resumed by the operator: noted
#: the way pre-flight notes a number LIMITED or RED when a campaign starts, so the health
#: poll (``guardrails.health``: ``limited_at_start``, ``red_at_start``) does not pause it
#: again for the state the operator chose to send in. The notes hold those words.
_STANDING = {
    ("sender_limited", "LIMITED"): "resumed by the operator while the provider reports the "
    "number LIMITED: not paused again for it",
    ("quality", "RED"): "resumed by the operator at the number's quality rating RED: not "
    "paused again for it",
}


def _standing_state_noted(session: Session, campaign_id: int) -> dict[str, object]:
    """The campaign's notes with the standing state its guardrail pause was for, when it
    was one (``_STANDING``); nothing otherwise."""
    row = session.execute(
        select(Campaign.paused_by, Campaign.notes).where(Campaign.id == campaign_id)
    ).first()
    if row is None or not row.paused_by:
        return {}
    note = _STANDING.get((str(row.paused_by.get("reason")), str(row.paused_by.get("figure"))))
    notes = list(row.notes or [])
    if note is None or note in notes:
        return {}
    return {"notes": [*notes, note]}


def cancel(session: Session, campaign_id: int) -> int:
    """Stop for good; returns how many people will never be sent their message."""
    _move(session, campaign_id, CANCELLABLE, CampaignState.CANCELLED, "cancel",
          finished_at=datetime.now(UTC))  # fmt: skip
    return close_cancelled(session, campaign_id)


def close_cancelled(session: Session, campaign_id: int) -> int:
    """Close a cancelled campaign's unsent batches and messages (also run when a
    preparation that was cancelled half-way finishes writing); returns the messages
    newly marked ``cancelled``."""
    now = datetime.now(UTC)
    batch_states.close_for_cancel(session, campaign_id)
    # Messages in a request that was in flight keep their course; the rest never left.
    in_flight = select(Batch.id).where(
        Batch.campaign_id == campaign_id,
        Batch.state.in_((BatchState.SUBMITTING, BatchState.SUBMITTED, BatchState.IN_DOUBT)),
    )
    never_sent = session.execute(
        update(Message)
        .where(
            Message.campaign_id == campaign_id,
            Message.status.in_((MessageStatus.PENDING, MessageStatus.QUEUED)),
            Message.batch_id.is_(None) | Message.batch_id.not_in(in_flight),
        )
        .values(
            status=MessageStatus.CANCELLED,
            result_description=CANCELLED_REASON,
            failed_at=now,
            next_attempt_at=None,
        )
    ).rowcount  # type: ignore[attr-defined]
    # Failures waiting for a resend: they were sent once; the resend is off.
    session.execute(
        update(Message)
        .where(Message.campaign_id == campaign_id, Message.next_attempt_at.is_not(None))
        .values(next_attempt_at=None, retry_class="final")
    )
    return int(never_sent or 0)


def close_stranded(session: Session) -> list[int]:
    """Cancelled campaigns with batches left ``pending``, ``held`` or ``waiting`` (a request handed
    back after the cancel, a resend planned as it was cancelled): closed like the rest.
    Run by the periodic report sweep; returns the campaigns it closed."""
    stranded = list(
        session.scalars(
            select(Batch.campaign_id)
            .where(
                Batch.state.in_((BatchState.PENDING, BatchState.HELD, BatchState.WAITING)),
                Batch.campaign_id.in_(
                    select(Campaign.id).where(Campaign.state == CampaignState.CANCELLED)
                ),
            )
            .distinct()
        )
    )
    for campaign_id in stranded:
        close_cancelled(session, campaign_id)
    return stranded


def _move(
    session: Session,
    campaign_id: int,
    allowed: tuple[CampaignState, ...],
    to: CampaignState,
    verb: str,
    **values: object,
) -> None:
    if lifecycle.move(session, campaign_id, allowed, to, **values):
        return
    state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    if state is None:
        raise DispatcherError(f"no campaign {campaign_id}")
    can = ", ".join(allowed)
    raise DispatcherError(f"campaign {campaign_id} is {state}: only a campaign that is {can} "
                          f"can {verb}")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Deleted:
    name: str
    rejects_path: str | None  # the rejects report it wrote, for the caller to remove


def delete(session: Session, campaign_id: int) -> Deleted:
    """Remove a campaign that never sent, with its people and batches. One that sent is
    kept: its report is the record of who was messaged."""
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise DispatcherError(f"no campaign {campaign_id}")
    if campaign.state not in DELETABLE:
        raise DispatcherError(
            f"campaign {campaign_id} is {campaign.state}: only a campaign that never sent "
            "(previewed, draft, scheduled, or failed or cancelled before sending) can be "
            "deleted"
        )
    left = session.scalar(
        select(Batch.id).where(Batch.campaign_id == campaign_id, Batch.state.in_(_LEFT)).limit(1)
    )
    if left is not None:
        raise DispatcherError(
            f"campaign {campaign_id} sent requests to LINK: it is kept, as the record of "
            f"who was messaged (`dispatcher report {campaign_id}`)"
        )
    found = Deleted(campaign.name, campaign.rejects_path)
    session.execute(delete_rows(Message).where(Message.campaign_id == campaign_id))
    session.execute(delete_rows(Batch).where(Batch.campaign_id == campaign_id))
    # Conditional: a worker that took the campaign meanwhile (draft -> preparing) wins,
    # and the whole transaction is undone.
    gone = session.execute(
        delete_rows(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state.in_(DELETABLE))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if not gone:
        raise DispatcherError(f"campaign {campaign_id} changed meanwhile; look again")
    return found
