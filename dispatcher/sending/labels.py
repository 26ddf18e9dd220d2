"""What Flower shows of a send task: readable, searchable, and free of phone numbers.

Celery sends ``kwargsrepr`` in its task events instead of the real arguments; Flower
displays it and parses it as a Python literal for its ``kwargs:key=value`` search, so
a dict literal with the campaign id makes ``kwargs:campaign_id=7`` find a campaign's
work. Only ids, the campaign's name and counts go in it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dispatcher.db import Batch, Campaign
from dispatcher.db.bulk import among


def send_label(
    session: Session, campaign_id: int, batch_ids: Sequence[str], name: str | None = None
) -> str:
    """``{'campaign_id': 7, 'campaign': 'Spring sale', 'batches': 'c7-b000001..c7-b000100',
    'batch_count': 100, 'destinations': 8000}`` for a chunk (or one batch); ``name`` is
    the campaign's, read here when not given."""
    if name is None:
        name = session.scalar(select(Campaign.name).where(Campaign.id == campaign_id))
    destinations = session.scalar(
        select(func.coalesce(func.sum(Batch.size), 0)).where(
            among(session, Batch.id, list(batch_ids))
        )
    )
    span = batch_ids[0] if len(batch_ids) == 1 else f"{batch_ids[0]}..{batch_ids[-1]}"
    label = {
        "campaign_id": campaign_id,
        "campaign": name or "",
        "batches": span,
        "batch_count": len(batch_ids),
        "destinations": int(destinations or 0),
    }
    return repr(label)


def campaigns_of(session: Session, batch_ids: Sequence[str]) -> dict[int, list[str]]:
    """Batch ids grouped by campaign, in the order given."""
    owner: dict[str, int] = {
        row.id: row.campaign_id
        for row in session.execute(
            select(Batch.id, Batch.campaign_id).where(among(session, Batch.id, list(batch_ids)))
        )
    }
    grouped: dict[int, list[str]] = {}
    for batch_id in batch_ids:
        if batch_id in owner:
            grouped.setdefault(owner[batch_id], []).append(batch_id)
    return grouped
