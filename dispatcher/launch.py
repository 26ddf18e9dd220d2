"""Registering a campaign: the spec is validated, then stored as a draft row."""

from __future__ import annotations

from dispatcher.campaign import LoadedCampaign
from dispatcher.db import Campaign, Database
from dispatcher.status import CampaignState


def create_campaign(db: Database, loaded: LoadedCampaign) -> int:
    """Store a validated campaign; the prepare task picks it up by id."""
    spec = loaded.spec
    with db.session() as session:
        campaign = Campaign(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_path=str(loaded.spec_path),
            source=spec.sender.source,
            state=CampaignState.DRAFT,
        )
        session.add(campaign)
        session.flush()
        return campaign.id
