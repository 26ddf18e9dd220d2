"""What a Meta answer says beyond the message id (seed 000's ``contacts``, seed 002's
``held_for_quality_assessment``), recorded by the send paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from dispatcher.audience import book
from dispatcher.db import Campaign, Database, Message
from dispatcher.operations import progress
from dispatcher.providers.meta.models import read_answer
from dispatcher.sending import fanout
from dispatcher.sending.batch import Outcome, SendContext, note_answers
from tests.integration.conftest import make_batch, personalised

PARENT, BSUID = "NO.ENT.12345678901234567890", "NO.12345678901234567890"


@pytest.mark.parametrize("simulator", [{"meta_paced_templates": ["hello"]}], indirect=True)
def test_messages_meta_holds_for_quality_are_marked_and_status_says_so(
    ctx: SendContext, sender: fanout.Fanout, simulator: str, tmp_path: Path
) -> None:
    batch_ids = personalised(ctx, tmp_path / "c", 5, "meta")
    outcomes = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert set(outcomes.values()) == {Outcome.SUBMITTED}
    with ctx.db.session() as session:
        held = session.scalar(select(func.count()).where(Message.held_for_quality.is_(True)))
        campaign_id = session.scalar(select(func.max(Campaign.id)))
        assert campaign_id is not None
        shown = progress.progress(session, campaign_id)
    assert held == 5
    assert shown is not None and (shown.held_for_quality, shown.provider) == (5, "Meta")


def test_an_answer_naming_the_destination_and_another_id_links_them_in_the_book(
    db: Database,
) -> None:
    make_batch(db, [PARENT])
    answer = read_answer(
        b'{"messaging_product":"whatsapp","contacts":[{"input":"%s","user_id":"%s",'
        b'"parent_user_id":"%s"}],"messages":[{"id":"wamid.1","message_status":"accepted"}]}'
        % (PARENT.encode(), BSUID.encode(), PARENT.encode())
    )
    assert answer is not None
    with db.session() as session:
        message_id = session.scalars(select(Message.id)).one()
        note_answers(session, [(message_id, PARENT, answer)])
    with db.session() as session:
        known = book.lookup(session, [PARENT])
    assert set(known) == {PARENT, BSUID} and len(set(known.values())) == 1
