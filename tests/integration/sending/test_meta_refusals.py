"""A send Meta refuses outright (a Graph error, not a status): the person's message fails
with WhatsApp's own code, which the one retry table judges as it judges a report's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign
from dispatcher.db import Campaign, Database, Message
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.providers import Providers
from dispatcher.providers.meta.client import MetaClient, MetaCredentials
from dispatcher.resending import planner as resend
from dispatcher.sending.batch import Outcome, send_batch
from tests.conftest import through
from tests.integration.resending.test_planner import META_TOKEN, NOW_WINDOWS, SPEC, Stack


@pytest.mark.parametrize("provider", ["meta"])
def test_a_template_meta_does_not_know_fails_each_message_with_its_code_and_is_final(
    db: Database, stack_for: Callable[..., Stack], tmp_path: Path
) -> None:
    stack = stack_for({})
    # No WABA id: the template list cannot be read, so the campaign goes on unchecked
    # (a note says so) and Meta refuses each send of the unknown template (132001).
    unchecked = MetaClient(MetaCredentials(stack.simulator.url, META_TOKEN, "v23.0", None))
    ctx = dataclasses.replace(stack.ctx, client=Providers(link=None, meta=unchecked))
    (tmp_path / "campaign.yaml").write_text(
        through("meta", SPEC.replace("name: hello", "name: no_such_template"))
    )
    (tmp_path / "people.csv").write_text("phone,name\n+4741234561,A\n+4741234562,B\n")
    campaign_id = create_campaign(db, preflight(tmp_path).loaded)
    try:
        batches = prepare_campaign(db, ctx.client, campaign_id, reports_dir=tmp_path / "r")
        assert [send_batch(ctx, b, f"t-{b}") for b in batches] == [Outcome.REJECTED] * 2
    finally:
        unchecked.close()
    with db.session() as session:
        notes = session.scalar(select(Campaign.notes).where(Campaign.id == campaign_id)) or []
        assert any("META_WABA_ID" in note for note in notes)
        resend.run_due(session, NOW_WINDOWS)  # judges the failures
    with db.session() as session:
        rows = session.execute(
            select(Message.status, Message.whatsapp_error_code, Message.retry_class)
        ).all()
    assert {tuple(row) for row in rows} == {("failed", 132001, "final")}
    assert stack.received() == {}
