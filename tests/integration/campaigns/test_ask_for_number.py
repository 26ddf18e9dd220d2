"""``ask_for_number``: a campaign's people known only by BSUID get a contact_request
follow-up once it completes (a campaign of its own, through the simulator), and the
outcome report shows who shared their number since."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from dispatcher.audience import book
from dispatcher.campaigns import followup, lifecycle, schedules
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, Message
from dispatcher.errors import CampaignSpecError
from dispatcher.interfaces.cli import app
from dispatcher.operations.reports import report_time
from dispatcher.operations.shares import shared_numbers
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending.batch import Outcome, SendContext, send_batch
from dispatcher.settings import get_settings
from dispatcher.status import CampaignState
from tests.integration.conftest import dlr, receive

SPEC = """\
name: Spring offer
sender: {source: "+4790000000", level: STANDARD}
template_category: marketing
message:
  type: template
  template: {name: hello_world, language: en_US}
recipients: people.csv
outside_care_window: send
ask_for_number:
  type: interactive
  interactive:
    type: contact_request
    body: {text: "Share your number with us?"}
    action: {name: request_contact_info}
"""
ONLY_BSUID = "NO.13491208655302741918"
LEARNS_A_NUMBER = "NO.24491208655302741918"  # the book learns its number before the end
WITH_NUMBER = ("+4791234567", "NO.35491208655302741918")
SHARED = "+4798765432"


def sent_to(simulator: str, after: int = 0) -> dict[str, dict[str, object]]:
    """Each destination's message as LINK's simulator took it (requests after the
    first ``after``)."""
    found: dict[str, dict[str, object]] = {}
    for request in httpx.get(f"{simulator}/_simulator/requests").json()[after:]:
        for destination in request["destinations"]:
            assert destination not in found, f"{destination} received twice"
            found[destination] = request["messages"][0]
    return found


def send_and_deliver(ctx: SendContext, campaign_id: int, tmp_path: Path) -> None:
    for batch_id in prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=tmp_path):
        assert send_batch(ctx, batch_id, "test") is Outcome.SUBMITTED
    with ctx.db.session() as session:
        sent = session.execute(
            select(Message.link_message_id, Message.destination).where(
                Message.campaign_id == campaign_id
            )
        ).all()
    for message_id, destination in sent:
        assert message_id is not None
        receive(ctx.db, dlr(message_id, 112003, custom={"destination": destination}))


def report(db: Database, campaign_id: int) -> dict[str, dict[str, str]]:
    """``dispatcher report`` by destination, as the command prints it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DATABASE_URL", db.url)
        get_settings.cache_clear()
        try:
            printed = CliRunner().invoke(app, ["report", str(campaign_id)])
        finally:
            get_settings.cache_clear()
    assert printed.exit_code == 0, printed.output
    return {r["destination"]: r for r in csv.DictReader(io.StringIO(printed.output))}


def test_people_known_only_by_bsuid_are_asked_for_their_number_and_the_report_shows_it(
    ctx: SendContext, simulator: str, tmp_path: Path
) -> None:
    folder = tmp_path / "offer"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(SPEC)
    (folder / "people.csv").write_text(
        f"phone,bsuid\n,{ONLY_BSUID}\n,{LEARNS_A_NUMBER}\n{WITH_NUMBER[0]},{WITH_NUMBER[1]}\n"
    )
    parent = create_campaign(ctx.db, load_campaign(folder))
    send_and_deliver(ctx, parent, tmp_path)
    assert set(sent_to(simulator)) == {ONLY_BSUID, LEARNS_A_NUMBER, WITH_NUMBER[0]}
    with ctx.db.session() as session:
        book.learn_links(session, [(["+4791111111", LEARNS_A_NUMBER], book.Source("mo"))])
    with ctx.db.session() as session:
        lifecycle.complete_settled_sending(session, (parent,))
    with ctx.db.session() as session:
        done = session.get(Campaign, parent)
        assert done is not None and done.state == CampaignState.COMPLETED
        [child] = session.scalars(select(Campaign.id).where(Campaign.id != parent))
        assert followup.NOTE.format(child=child, people=1) in (done.notes or [])
        asking = session.get(Campaign, child)
        assert asking is not None and asking.state == CampaignState.SCHEDULED

    # Beat starts it; it is sent like any campaign, to the one person without a number.
    assert schedules.start_due(ctx.db, lambda _: None, datetime.now(UTC)) == [child]
    before = len(httpx.get(f"{simulator}/_simulator/requests").json())
    send_and_deliver(ctx, child, tmp_path)
    asked = sent_to(simulator, before)
    assert list(asked) == [ONLY_BSUID]
    assert asked[ONLY_BSUID]["type"] == "interactive"
    assert asked[ONLY_BSUID]["interactive"]["type"] == "contact_request"  # type: ignore[index]

    # Completing again (a resend reopened it) asks nobody twice.
    with ctx.db.session() as session:
        assert lifecycle.reopen(session, parent)
    with ctx.db.session() as session:
        assert lifecycle.complete_if_settled(session, parent)
        assert session.scalar(select(Campaign.id).where(Campaign.id > child)) is None

    assert all(r["shared_number"] == "" for r in report(ctx.db, parent).values())
    with ctx.db.session() as session:
        book.learn_links(session, [([SHARED, ONLY_BSUID], book.Source("contacts", "report 9"))])
    with ctx.db.session() as session:
        [share] = shared_numbers(session, parent)
        learned = session.scalar(
            select(book.Identity.learned_at).where(book.Identity.identifier == SHARED)
        )
    assert (share.destination, share.number) == (ONLY_BSUID, SHARED)
    assert learned is not None
    for campaign_id in (parent, child):
        lines = report(ctx.db, campaign_id)
        assert lines[ONLY_BSUID]["shared_number"] == SHARED
        assert lines[ONLY_BSUID]["shared_at"] == report_time(learned)
        assert all(r["shared_number"] == "" for d, r in lines.items() if d != ONLY_BSUID)


@pytest.mark.parametrize(
    ("ask", "where"),
    [
        ("{type: text, text: {body: 'your number?'}}", "ask_for_number"),
        (
            "{type: interactive, interactive: {type: contact_request, body: {text: 'Hi {city}'},"
            " action: {name: request_contact_info}}}",
            "ask_for_number",
        ),
        (
            "{type: interactive, interactive: {type: contact_request, body: {text: ''},"
            " action: {name: request_contact_info}}}",
            "ask_for_number.interactive.body.text",
        ),
    ],
)
def test_a_bad_ask_for_number_names_the_field(ask: str, where: str, tmp_path: Path) -> None:
    (tmp_path / "campaign.yaml").write_text(
        SPEC.split("ask_for_number:")[0] + f"ask_for_number: {ask}\n"
    )
    (tmp_path / "people.csv").write_text(f"phone,bsuid\n,{ONLY_BSUID}\n")
    with pytest.raises(CampaignSpecError) as caught:
        load_campaign(tmp_path)
    assert where in [path for path, _ in caught.value.problems]
