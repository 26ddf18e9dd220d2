from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from dispatcher.db import Base, Batch, Campaign, Database, Message, migrate
from dispatcher.status import BatchState, CampaignState, MessageStatus

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def migrated_pg(pg_url: str) -> str:
    migrate(pg_url)
    return pg_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same tests against both supported databases."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
        migrate(url)
    else:
        url = request.getfixturevalue("migrated_pg")
    database = Database(url)
    if request.param == "postgresql":
        _truncate(database)  # the shared database may hold other tests' rows
    yield database
    if request.param == "postgresql":
        _truncate(database)
    database.dispose()


def _truncate(database: Database) -> None:
    tables = ", ".join(t.name for t in reversed(Base.metadata.sorted_tables))
    with database.session() as session:
        session.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))


def make_batch(db: Database, destinations: list[str], *, link_ids: list[str] | None = None) -> str:
    """A sending campaign with one batch of ``destinations`` (submitted if ids are given)."""
    with db.session() as session:
        campaign = Campaign(
            name="t",
            spec={},
            spec_path="/dev/null",
            source="+4790000000",
            state=CampaignState.SENDING,
        )
        session.add(campaign)
        session.flush()
        batch_id = f"c{campaign.id}-b000001"
        session.add(
            Batch(
                id=batch_id,
                campaign_id=campaign.id,
                seq=1,
                payload={"messages": []},
                size=len(destinations),
                state=BatchState.SUBMITTED if link_ids else BatchState.SUBMITTING,
            )
        )
        session.flush()
        for position, destination in enumerate(destinations):
            session.add(
                Message(
                    campaign_id=campaign.id,
                    identity_key=destination,
                    destination=destination,
                    source_line=position + 2,
                    params={},
                    batch_id=batch_id,
                    position=position,
                    link_message_id=link_ids[position] if link_ids else None,
                    status=MessageStatus.SUBMITTED if link_ids else MessageStatus.QUEUED,
                )
            )
    return batch_id
