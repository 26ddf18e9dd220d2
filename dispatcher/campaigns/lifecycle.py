"""Every change of a campaign's state, in one module (ARCHITECTURE: each state machine
has one module that changes it; the message's rule is ``status.advances``).

::

    scheduled -> draft -> preparing -> sending -> completed -> sending (a resend asked)
                  |           |-> previewed (a dry run)
                  v           |-> failed (refused, or stopped half-way)
              scheduled       sending -> paused -> sending;  sending -> failed
              (not queued)    any unfinished -> cancelled

Each change is one conditional UPDATE (``WHERE state IN ...``): workers, beat and a
command racing for one campaign agree, and the loser learns it from the row count.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session

from dispatcher.campaigns import followup
from dispatcher.db import Campaign, Message
from dispatcher.operations import alerts
from dispatcher.providers import Level
from dispatcher.status import SETTLED, CampaignState, MessageStatus

#: How much of an error a campaign keeps.
ERROR_CHARS = 2000


def move(
    session: Session,
    campaign_id: int,
    allowed: Iterable[CampaignState],
    to: CampaignState,
    **values: object,
) -> bool:
    """Move the campaign from one of ``allowed`` to ``to``, setting ``values`` too;
    False when it was in none of them (someone else moved it first)."""
    moved = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state.in_(tuple(allowed)))
        .values(state=to, **values)
    ).rowcount  # type: ignore[attr-defined]
    return bool(moved)


def due(session: Session, campaign_id: int) -> bool:
    """A scheduled campaign's time has come: it waits for its prepare task."""
    return move(session, campaign_id, (CampaignState.SCHEDULED,), CampaignState.DRAFT)


def not_queued(session: Session, campaign_id: int) -> bool:
    """Its prepare task could not be queued: scheduled again, for the next round."""
    return move(session, campaign_id, (CampaignState.DRAFT,), CampaignState.SCHEDULED)


def start_preparing(session: Session, campaign_id: int) -> bool:
    """Taken by a prepare task. A cancel committed meanwhile is not overwritten; a
    campaign not yet due, or no longer wanted, stays as it is."""
    allowed = (CampaignState.DRAFT, CampaignState.PREPARING)
    return move(session, campaign_id, allowed, CampaignState.PREPARING)


def open_for_sending(
    session: Session,
    campaign_id: int,
    *,
    level: Level,
    rate: int,
    notes: list[str],
    resuming: bool,
    dry_run: bool,
) -> bool:
    """Record the sender's level and open the campaign for sending (a dry run stays
    preparing until it is previewed). Of two deliveries of the prepare task, one moves
    it on; False for the other. Notes made when it was registered come first."""
    expected = CampaignState.SENDING if resuming else CampaignState.PREPARING
    earlier = session.scalar(select(Campaign.notes).where(Campaign.id == campaign_id)) or []
    notes = [*earlier, *(note for note in notes if note not in earlier)]
    to = expected if dry_run else CampaignState.SENDING
    opened = move(session, campaign_id, (expected,), to, level=level.value,
                  rate_per_second=rate, notes=notes or None)  # fmt: skip
    if opened and not dry_run and not resuming:
        alerts.started(session, campaign_id)  # in this transaction (an outbox row)
    return opened


def previewed(session: Session, campaign_id: int, now: datetime) -> bool:
    """A dry run's people are stored: kept as a preview, never sent."""
    return move(session, campaign_id, (CampaignState.PREPARING,), CampaignState.PREVIEWED,
                prepared_at=now, finished_at=now)  # fmt: skip


def claim_preview(session: Session, campaign_id: int) -> bool:
    """A preview is being started as a new campaign (``interfaces.actions.start``):
    cancelled now, so a second start at the same moment finds it taken; deleted once
    the new campaign is registered, or ``release_preview`` gives it back."""
    return move(session, campaign_id, (CampaignState.PREVIEWED,), CampaignState.CANCELLED,
                error="being started as a new campaign")  # fmt: skip


def release_preview(session: Session, campaign_id: int) -> bool:
    """The start of a claimed preview did not register a campaign: a preview again."""
    return move(session, campaign_id, (CampaignState.CANCELLED,), CampaignState.PREVIEWED,
                error=None)  # fmt: skip


def fail(
    session: Session,
    campaign_id: int,
    error: str,
    allowed: Iterable[CampaignState] = (CampaignState.PREPARING, CampaignState.SENDING),
) -> bool:
    """Stop the campaign for a reason nobody can fix by waiting (refused credentials,
    a pre-flight refusal, a preparation that broke)."""
    failed = move(session, campaign_id, allowed, CampaignState.FAILED,
                  error=error[:ERROR_CHARS], finished_at=datetime.now(UTC))  # fmt: skip
    if failed:
        alerts.failed(session, campaign_id, error)
    return failed


def guard_pause(session: Session, campaign_id: int, paused_by: dict[str, object]) -> bool:
    """A guardrail pauses a sending campaign (``guardrails.pausing``), saying why."""
    return move(session, campaign_id, (CampaignState.SENDING,), CampaignState.PAUSED,
                paused_by=paused_by)  # fmt: skip


def reopen(session: Session, campaign_id: int) -> bool:
    """A completed campaign has messages planned for a resend again (on request)."""
    return move(session, campaign_id, (CampaignState.COMPLETED,), CampaignState.SENDING,
                finished_at=None)  # fmt: skip


def unsettled() -> ColumnElement[bool]:
    """Messages the campaign still waits for: not settled, or a failure whose resend is
    planned or not yet judged (``resend.plan``)."""
    return or_(
        Message.status.not_in(SETTLED),
        (Message.status == MessageStatus.FAILED)
        & (
            Message.next_attempt_at.is_not(None)
            | (Message.retry_class.is_(None) & Message.submitted_at.is_not(None))
        ),
    )


def complete_if_settled(session: Session, campaign_id: int) -> bool:
    """Mark a sending campaign completed once every message has its final outcome, not
    before its people are all written (``prepared_at``).

    One statement, so the look at its messages and at ``prepared_at`` see the same
    moment. As two (a count, then the update), a count taken while preparation was
    still writing could complete the campaign once ``prepared_at`` appeared: seen on a
    loaded machine, with a canary's 170 people left unsent. Preparation commits its
    messages before ``prepared_at``, so a statement that sees the one sees the other."""
    waiting = select(Message.id).where(Message.campaign_id == campaign_id, unsettled()).exists()
    done = session.execute(
        update(Campaign)
        .where(
            Campaign.id == campaign_id,
            Campaign.state == CampaignState.SENDING,
            Campaign.prepared_at.is_not(None),
            ~waiting,
        )
        .values(state=CampaignState.COMPLETED, finished_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if done:
        followup.on_completed(session, campaign_id)  # the spec's ask_for_number
        alerts.completed(session, campaign_id)
    return bool(done)


def complete_settled_sending(session: Session, campaign_ids: Iterable[int] | None = None) -> None:
    """``complete_if_settled`` for the sending campaigns among ``campaign_ids`` (all of
    them when None): the periodic sweep, and whoever follows a campaign's end."""
    query = select(Campaign.id).where(Campaign.state == CampaignState.SENDING)
    if campaign_ids is not None:
        query = query.where(Campaign.id.in_(tuple(campaign_ids)))
    for campaign_id in list(session.scalars(query)):
        complete_if_settled(session, campaign_id)
