"""Sending one batch against the simulator over real HTTP, on both databases."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select, update

from dispatcher.campaigns.spec import CampaignSpec
from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.sending.batch import Outcome, send_batch
from tests.integration.conftest import context, make_batch

SPEC = CampaignSpec.model_validate(
    {
        "name": "t",
        "sender": {"source": "+4790000000", "level": "STANDARD"},
        "message": {"type": "text", "text": "hello"},
        "outside_care_window": "send",  # no care window is looked at here
        "recipients": ["people.csv"],
    }
)


@pytest.fixture()
def batch(db: Database) -> str:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"])
    with db.session() as session:
        session.execute(
            update(Batch).values(
                state="pending", payload={"messages": [{"type": "text", "text": {"body": "hello"}}]}
            )
        )
        session.execute(
            update(Campaign).values(spec=SPEC.model_dump(mode="json"), rate_per_second=80)
        )
    return batch_id


def states(db: Database, batch_id: str) -> tuple[str, set[str], set[str | None]]:
    with db.session() as session:
        batch_state = session.scalar(select(Batch.state).where(Batch.id == batch_id))
        rows = session.execute(
            select(Message.status, Message.link_message_id).where(Message.batch_id == batch_id)
        ).all()
    return str(batch_state), {r[0] for r in rows}, {r[1] for r in rows}


def test_a_batch_is_submitted_once_with_ids_in_destination_order(
    db: Database, redis_url: str, simulator: str, batch: str
) -> None:
    ctx = context(db, redis_url, simulator)
    assert send_batch(ctx, batch, "task-1") is Outcome.SUBMITTED
    assert send_batch(ctx, batch, "task-2") is Outcome.SKIPPED  # a duplicate task sends nothing
    batch_state, statuses, ids = states(db, batch)
    assert (batch_state, statuses) == ("submitted", {"submitted"})
    assert None not in ids and len(ids) == 2
    stats = httpx.get(f"{simulator}/_simulator/stats").json()
    assert stats["destinations"] == {"+4791234567": 1, "+4791234568": 1}


def test_refused_credentials_fail_the_messages_and_stop_the_campaign(
    db: Database, redis_url: str, simulator: str, batch: str
) -> None:
    ctx = context(db, redis_url, simulator, password="wrong")
    assert send_batch(ctx, batch, "t") is Outcome.REJECTED
    batch_state, statuses, _ = states(db, batch)
    assert (batch_state, statuses) == ("rejected", {"failed"})
    with db.session() as session:
        campaign = session.scalars(select(Campaign)).one()
        codes = set(session.scalars(select(Message.result_code)))
    assert campaign.state == "failed"
    assert (campaign.error or "").startswith("LINK refused the account or its credentials")
    assert codes == {112401}


@pytest.mark.parametrize("simulator", [{"error_rate": 1.0}], indirect=True)
def test_a_server_error_releases_the_batch_for_a_later_try(
    db: Database, redis_url: str, simulator: str, batch: str
) -> None:
    assert send_batch(context(db, redis_url, simulator), batch, "t") is Outcome.RETRY
    assert states(db, batch)[:2] == ("pending", {"queued"})


def test_a_batch_found_mid_request_after_a_crash_is_in_doubt_not_resent(
    db: Database, redis_url: str, simulator: str, batch: str
) -> None:
    with db.session() as session:
        session.execute(update(Batch).values(state="submitting", claimed_by="task-1"))
    ctx = context(db, redis_url, simulator)
    # A different task delivery leaves the claimed batch alone...
    assert send_batch(ctx, batch, "task-2") is Outcome.SKIPPED
    assert states(db, batch)[0] == "submitting"
    # ...the same task, redelivered after its worker died, marks it in doubt.
    assert send_batch(ctx, batch, "task-1") is Outcome.IN_DOUBT
    assert states(db, batch)[0] == "in_doubt"
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 0
