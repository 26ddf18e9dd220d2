"""Campaign progress from the database: what the CLI, status JSON and metrics show."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign, Message
from dispatcher.status import SETTLED, BatchState, CampaignState, MessageStatus


@dataclass(frozen=True, slots=True)
class Progress:
    campaign_id: int
    name: str
    state: str
    error: str | None
    level: str | None
    rate_per_second: int | None
    loaded: int
    rejected: int
    duplicates: int
    rejects_path: str | None
    messages: int  # people accepted for sending
    submitted: int
    sent: int
    delivered: int
    read: int
    failed: int
    unsettled: int
    in_doubt_batches: int

    @property
    def finished(self) -> bool:
        return self.state in (
            CampaignState.COMPLETED,
            CampaignState.FAILED,
            CampaignState.CANCELLED,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def progress(session: Session, campaign_id: int) -> Progress | None:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        return None
    failed_states = (MessageStatus.FAILED, MessageStatus.EXPIRED)
    counts = session.execute(
        select(
            func.count(),
            func.count(Message.submitted_at),
            func.count(Message.sent_at),
            func.count(Message.delivered_at),
            func.count(Message.read_at),
            func.coalesce(func.sum(case((Message.status.in_(failed_states), 1), else_=0)), 0),
            func.coalesce(func.sum(case((Message.status.in_(SETTLED), 0), else_=1)), 0),
        ).where(Message.campaign_id == campaign_id)
    ).one()
    in_doubt = session.scalar(
        select(func.count()).where(
            Batch.campaign_id == campaign_id, Batch.state == BatchState.IN_DOUBT
        )
    )
    return Progress(
        campaign_id=campaign.id,
        name=campaign.name,
        state=campaign.state,
        error=campaign.error,
        level=campaign.level,
        rate_per_second=campaign.rate_per_second,
        loaded=campaign.loaded,
        rejected=campaign.rejected,
        duplicates=campaign.duplicates,
        rejects_path=campaign.rejects_path,
        messages=counts[0],
        submitted=counts[1],
        sent=counts[2],
        delivered=counts[3],
        read=counts[4],
        failed=int(counts[5]),
        unsettled=int(counts[6]),
        in_doubt_batches=in_doubt or 0,
    )


def complete_if_settled(session: Session, campaign_id: int) -> bool:
    """Mark a sending campaign completed once every message has a settled status."""
    unsettled = session.scalar(
        select(func.count()).where(
            Message.campaign_id == campaign_id, Message.status.not_in(SETTLED)
        )
    )
    if unsettled:
        return False
    done = session.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.state == CampaignState.SENDING)
        .values(state=CampaignState.COMPLETED, finished_at=datetime.now(UTC))
    ).rowcount  # type: ignore[attr-defined]
    return bool(done)


def active_campaigns(session: Session) -> list[int]:
    return list(session.scalars(select(Campaign.id).where(Campaign.state == CampaignState.SENDING)))


def complete_if_settled_if_sending(session: Session, campaign_id: int) -> None:
    """``complete_if_settled`` for a campaign that is sending (cheap no-op otherwise)."""
    state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    if state == CampaignState.SENDING:
        complete_if_settled(session, campaign_id)


def outcomes(session: Session, campaign_id: int) -> Iterator[tuple[object, ...]]:
    """Every message of a campaign in ``reports.OUTCOME_COLUMNS`` order, by CSV line."""
    rows = session.execute(
        select(
            Message.source_line,
            Message.destination,
            Message.status,
            Message.result_code,
            Message.whatsapp_error_code,
            Message.result_description,
            Message.batch_id,
            Message.link_message_id,
            Message.submitted_at,
            Message.sent_at,
            Message.delivered_at,
            Message.read_at,
            Message.failed_at,
        )
        .where(Message.campaign_id == campaign_id)
        .order_by(Message.source_line)
        .execution_options(yield_per=1000)
    )
    for row in rows:
        yield tuple(row)
