"""Registering a campaign: the spec is validated, then stored as a draft row."""

from __future__ import annotations

from datetime import UTC, datetime

from dispatcher.campaign import LoadedCampaign
from dispatcher.db import Campaign, Database
from dispatcher.status import CampaignState


def create_campaign(db: Database, loaded: LoadedCampaign) -> int:
    """Store a validated campaign; the prepare task picks it up by id. One with a
    ``send_at`` still ahead is stored ``scheduled``: beat starts it when due
    (``schedules.start_due``)."""
    spec = loaded.spec
    later = spec.send_at is not None and spec.send_at > datetime.now(UTC)
    with db.session() as session:
        campaign = Campaign(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_path=str(loaded.spec_path),
            source=spec.sender.source,
            state=CampaignState.SCHEDULED if later else CampaignState.DRAFT,
        )
        session.add(campaign)
        session.flush()
        return campaign.id
