"""A slice's claim: in one statement (PostgreSQL) it decides what the step-by-step
claim (SQLite, care windows) decides, batch by batch and message by message."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select

from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.db.bulk import packed
from dispatcher.sending.claims import _claim_in_steps, claim_at_once
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


class NoCareWindows:
    """A fan-out whose campaigns judge no care window (the steps ask each one's spec)."""

    def spec(self, _session: Any, _campaign_id: int) -> Any:
        return SimpleNamespace(is_template=True, outside_care_window="skip")


Claim = Callable[[Any, list[str], str, datetime], tuple[dict[str, int], Any]]


def at_once(session: Any, ids: list[str], claimer: str, now: datetime) -> Any:
    ids_text = packed(ids)
    assert ids_text is not None
    return claim_at_once(session, ids_text, claimer, now)


def in_steps(session: Any, ids: list[str], claimer: str, now: datetime) -> Any:
    return _claim_in_steps(session, NoCareWindows(), ids, claimer, now)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("db", "claim"),
    [("postgresql", at_once), ("postgresql", in_steps), ("sqlite", in_steps)],
    indirect=["db"],
    ids=["postgresql-at-once", "postgresql-in-steps", "sqlite-in-steps"],
)
def test_a_slice_is_claimed_counted_and_numbered_alike_at_once_and_in_steps(
    db: Database, claim: Claim
) -> None:
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
        live, waiting = claim(session, ids, "me", now)

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
        "b4-0": (0, 0),  # its campaign is paused: not claimed (or handed back), no try
    }  # fmt: skip
    submitting = BatchState.SUBMITTING
    assert batches == {
        "b1": (submitting, "me", 1), "b2": (submitting, "me", 1), "b3": (submitting, "me", 1),
        "b4": (BatchState.PENDING, None, 0),
        "b5": (submitting, "other", 0),
    }  # fmt: skip

    with db.session() as session:  # a second claim of the same slice wins nothing
        assert claim(session, ids, "me", now) == ({}, {})
