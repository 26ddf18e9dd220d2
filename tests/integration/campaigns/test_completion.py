"""A campaign completes only when every one of its people has an outcome: never on a
look at its messages taken while preparation was still writing them."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import event, insert, select, update

from dispatcher.campaigns import lifecycle
from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.status import BatchState, CampaignState, MessageStatus

pytestmark = [pytest.mark.integration, pytest.mark.parametrize("db", ["postgresql"], indirect=True)]


def _sending_campaign(db: Database) -> int:
    """Opened for sending, its people not written yet (``open_for_sending``)."""
    with db.session() as session:
        campaign = Campaign(name="c", spec={}, spec_path="/dev/null", source="+4790000000",
                            state=CampaignState.SENDING)  # fmt: skip
        session.add(campaign)
        session.flush()
        return campaign.id


def _write_people_then_prepared(db: Database, campaign_id: int) -> None:
    """What preparation commits: a batch and its people, then ``prepared_at``."""
    with db.session() as session:
        session.execute(
            insert(Batch).values(id="b1", campaign_id=campaign_id, seq=1, size=1,
                                 state=BatchState.PENDING, payload={"messages": []})
        )  # fmt: skip
        session.execute(
            insert(Message).values(campaign_id=campaign_id, identity_key="k1",
                                   destination="+4791234567", source_line=2, params={},
                                   batch_id="b1", status=MessageStatus.QUEUED)
        )  # fmt: skip
    with db.session() as session:
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(prepared_at=datetime.now(UTC))
        )


def test_a_look_started_before_the_people_were_written_completes_nothing(db: Database) -> None:
    """The completer stalls (a loaded machine) just before it changes the campaign; the
    preparation writes its people and ``prepared_at`` meanwhile. Seen in CI: such a
    campaign completed with 170 people never sent."""
    campaign_id = _sending_campaign(db)
    stalled, go = threading.Event(), threading.Event()
    completer: list[threading.Thread] = []

    def stall(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if threading.current_thread() in completer and statement.lstrip().startswith(
            "UPDATE campaigns"
        ):
            stalled.set()
            go.wait(10)

    def complete() -> None:
        with db.session() as session:
            lifecycle.complete_settled_sending(session, [campaign_id])

    event.listen(db.engine, "before_cursor_execute", stall)
    try:
        completer.append(threading.Thread(target=complete))
        completer[0].start()
        assert stalled.wait(10)
        _write_people_then_prepared(db, campaign_id)
        go.set()
        completer[0].join(10)
    finally:
        event.remove(db.engine, "before_cursor_execute", stall)
    with db.session() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    assert state == CampaignState.SENDING


def test_a_prepared_campaign_whose_people_all_have_outcomes_completes(db: Database) -> None:
    campaign_id = _sending_campaign(db)
    _write_people_then_prepared(db, campaign_id)
    with db.session() as session:
        assert not lifecycle.complete_if_settled(session, campaign_id)  # one still queued
        session.execute(update(Message).values(status=MessageStatus.DELIVERED))
        assert lifecycle.complete_if_settled(session, campaign_id)
    with db.session() as session:
        state = session.scalar(select(Campaign.state).where(Campaign.id == campaign_id))
    assert state == CampaignState.COMPLETED
