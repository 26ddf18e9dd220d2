"""A slice's claim in one statement (PostgreSQL): what the step-by-step claim decides,
batch by batch and message by message."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.db.bulk import packed
from dispatcher.sending.claims import claim_at_once
from dispatcher.status import BatchState, CampaignState, MessageStatus

QUEUED, DELIVERED = MessageStatus.QUEUED, MessageStatus.DELIVERED


def campaign(db: Database, state: CampaignState, batches: dict[str, list[str]]) -> int:
    """A campaign with pending batches (name -> its messages' statuses, in order)."""
    with db.session() as session:
        row = Campaign(name="t", spec={}, spec_path="/dev/null", source="+4790000000", state=state)
        session.add(row)
        session.flush()
        for seq, (name, statuses) in enumerate(batches.items(), start=1):
            session.add(
                Batch(id=name, campaign_id=row.id, seq=seq, payload={"messages": []},
                      size=len(statuses), state=BatchState.PENDING)
            )  # fmt: skip
            session.flush()
            for position, status in enumerate(statuses):
                session.add(
                    Message(campaign_id=row.id, identity_key=f"{name}-{position}",
                            destination=f"+47912345{seq}{position}", source_line=position + 2,
                            params={}, batch_id=name, position=position, status=status)
                )  # fmt: skip
        return row.id


@pytest.mark.parametrize("db", ["postgresql"], indirect=True)
def test_one_statement_claims_counts_and_numbers_a_slice_as_the_steps_do(db: Database) -> None:
    sending = campaign(db, CampaignState.SENDING, {
        "b1": [QUEUED, DELIVERED, QUEUED],  # its second person settled meanwhile
        "b2": [QUEUED],
        "b3": [DELIVERED],  # nothing left to send
        "b5": [QUEUED],  # another delivery's claim
    })  # fmt: skip
    campaign(db, CampaignState.PAUSED, {"b4": [QUEUED]})
    with db.session() as session:
        session.get_one(Batch, "b5").state = BatchState.SUBMITTING
        session.get_one(Batch, "b5").claimed_by = "other"
    ids = ["b1", "b2", "b3", "b4", "b5"]
    now = datetime.now(UTC)

    with db.session() as session:
        ids_text = packed(ids)
        assert ids_text is not None
        live, waiting = claim_at_once(session, ids_text, "me", now)

    assert live == {"b1": sending, "b2": sending, "b3": sending}
    with db.session() as session:
        messages = {
            m.identity_key: (m.position, m.attempts, m.id, m.destination)
            for m in session.scalars(select(Message))
        }
        batches = {
            b.id: (b.state, b.claimed_by, b.attempts) for b in session.scalars(select(Batch))
        }
    # In request order; the settled person drops out and the rest close up.
    assert waiting == {
        "b1": [(messages["b1-0"][2], "+4791234510", None),
               (messages["b1-2"][2], "+4791234512", None)],
        "b2": [(messages["b2-0"][2], "+4791234520", None)],
    }  # fmt: skip
    positions = {key: (position, attempts) for key, (position, attempts, _, _) in messages.items()}
    assert positions == {
        "b1-0": (0, 1), "b1-1": (None, 0), "b1-2": (1, 1),
        "b2-0": (0, 1),
        "b3-0": (None, 0),
        "b5-0": (0, 0),  # not ours: untouched
        "b4-0": (0, 0),  # its campaign is paused: not claimed, no try counted
    }  # fmt: skip
    submitting = BatchState.SUBMITTING
    assert batches == {
        "b1": (submitting, "me", 1), "b2": (submitting, "me", 1), "b3": (submitting, "me", 1),
        "b4": (BatchState.PENDING, None, 0),
        "b5": (submitting, "other", 0),
    }  # fmt: skip

    with db.session() as session:  # a second claim of the same slice wins nothing
        assert claim_at_once(session, ids_text, "me", now) == ({}, {})
