"""Pre-flight from LINK's phone number information API: BLOCKED, LIMITED, the
messaging tier, the level and the spec's ceiling (through the simulator, over HTTP)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Batch, Campaign, CareWindow, Database, Message
from dispatcher.preparation import prepare
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.sending import windows
from dispatcher.settings import get_settings
from dispatcher.status import BatchState, CampaignState

SPEC = """\
name: Pre-flight
sender: {source: "+4790000000"SENDER_EXTRA}
template_category: marketing
message:
  type: template
  template: {name: hello_world, language: en_US}
recipients: people.csv
batch_size: 50
"""


@pytest.fixture()
def link(simulator: str) -> Iterator[LinkClient]:
    client = LinkClient(LinkCredentials(simulator, "u", "pw", "P", "1"))
    yield client
    client.close()


def prepared(db: Database, link: LinkClient, folder: Path, people: int, extra: str = "") -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "campaign.yaml").write_text(SPEC.replace("SENDER_EXTRA", extra))
    rows = "\n".join(f"+479{n:07d}" for n in range(1000001, 1000001 + people))
    (folder / "people.csv").write_text(f"phone\n{rows}\n")
    campaign_id = create_campaign(db, load_campaign(folder))
    prepare.prepare_campaign(db, link, campaign_id, reports_dir=folder / "reports")
    return campaign_id


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # SQLite drops the zone


def campaign(db: Database, campaign_id: int) -> Campaign:
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        session.expunge(found)
        return found


@pytest.mark.parametrize("simulator", [{"health_status": "BLOCKED"}], indirect=True)
def test_a_blocked_number_refuses_to_start_with_links_reasons(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = campaign(db, prepared(db, link, tmp_path, 3))
    assert found.state == CampaignState.FAILED
    assert "BLOCKED" in (found.error or "")
    assert "141002 - Message templates can only be sent out if they are approved." in found.error
    assert "Edit or appeal" in found.error


@pytest.mark.parametrize("simulator", [{"health_status": "LIMITED"}], indirect=True)
def test_a_limited_number_sends_with_links_additional_info_as_a_note(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = campaign(db, prepared(db, link, tmp_path, 3))
    assert found.state == CampaignState.SENDING
    assert any("LIMITED" in n and "display name" in n for n in found.notes or [])


@pytest.mark.parametrize("simulator", [{"messaging_tier": "TIER_250"}], indirect=True)
def test_people_beyond_the_tier_are_held_a_day_per_cap(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    campaign_id = prepared(db, link, tmp_path, 600)
    with db.session() as session:
        batches = session.execute(
            select(Batch.state, Batch.size, Batch.not_before)
            .where(Batch.campaign_id == campaign_id)
            .order_by(Batch.seq)
        ).all()
    sent_now = sum(b.size for b in batches if b.state == BatchState.PENDING)
    held = [b for b in batches if b.state == BatchState.HELD]
    assert sent_now == 250
    days = sorted({round((aware(b.not_before) - datetime.now(UTC)) / timedelta(hours=24))
                   for b in held})  # fmt: skip
    assert days == [1, 2]  # 250 tomorrow, the last 100 the day after
    assert sum(b.size for b in held) == 350
    with db.session() as session:  # a day later they are released to the send queue
        assert windows.release_held(session, datetime.now(UTC) + timedelta(hours=25))
        assert windows.release_held(session, datetime.now(UTC) + timedelta(hours=25)) == []


@pytest.mark.parametrize("simulator", [{"messaging_tier": "TIER_250"}], indirect=True)
def test_the_tier_can_be_ignored_by_the_spec(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    campaign_id = prepared(db, link, tmp_path, 300, ", tier_limit: ignore")
    with db.session() as session:
        states = set(session.scalars(select(Batch.state).where(Batch.campaign_id == campaign_id)))
    assert states == {BatchState.PENDING}


@pytest.mark.parametrize("simulator", [{"level": "HIGH"}], indirect=True)
def test_the_level_comes_from_the_api_and_the_spec_may_lower_the_ceiling(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = campaign(db, prepared(db, link, tmp_path / "a", 3))
    assert (found.level, found.rate_per_second) == ("HIGH", 1000)
    found = campaign(db, prepared(db, link, tmp_path / "b", 3, ", ceiling_percent: 90"))
    assert (found.level, found.rate_per_second) == ("HIGH", 900)


def test_a_spec_level_above_what_link_reports_is_lowered_with_a_note(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = campaign(db, prepared(db, link, tmp_path, 3, ", level: HIGH"))
    assert (found.level, found.rate_per_second) == ("STANDARD", 80)
    assert any("LINK reports STANDARD" in n for n in found.notes or [])


@pytest.mark.parametrize("simulator", [{"quality_rating": "RED"}], indirect=True)
def test_a_red_quality_rating_is_a_warning_before_the_start(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    found = campaign(db, prepared(db, link, tmp_path, 3))
    assert found.state == CampaignState.SENDING
    assert any("quality rating RED" in n for n in found.notes or [])


@pytest.mark.parametrize(
    ("simulator", "state"),
    [
        ({"quality_rating": "RED"}, CampaignState.FAILED),
        ({"quality_rating": "YELLOW"}, CampaignState.SENDING),
        ({"quality_rating": "NA"}, CampaignState.SENDING),  # a new number: no rating yet
    ],
    indirect=["simulator"],
    ids=["red", "yellow", "not-yet-rated"],
)
def test_min_quality_refuses_a_number_rated_below_it(
    db: Database, link: LinkClient, tmp_path: Path, state: CampaignState
) -> None:
    found = campaign(db, prepared(db, link, tmp_path, 3, ", min_quality: YELLOW"))
    assert found.state == state
    if state == CampaignState.FAILED:
        assert "quality rating RED, below sender.min_quality YELLOW" in (found.error or "")


SIBLING = "+4790000001"


def sent_yesterday_evening(db: Database, folder: Path, message: str, people: int) -> None:
    """A campaign of the sibling number that reached ``people`` people an hour ago."""
    folder.mkdir(parents=True)
    spec = SPEC.replace("+4790000000", SIBLING).replace("SENDER_EXTRA", "")
    spec = spec.replace("template_category: marketing\n", "")
    spec = spec.replace(TEMPLATE, message)
    (folder / "campaign.yaml").write_text(spec)
    rows = "\n".join(f"+479{n:07d}" for n in range(2000001, 2000001 + people))
    (folder / "people.csv").write_text(f"phone\n{rows}\n")
    campaign_id = create_campaign(db, load_campaign(folder))
    with db.session() as session:
        session.add_all(
            Message(campaign_id=campaign_id, identity_key=f"+479{n:07d}",
                    destination=f"+479{n:07d}", source_line=n, params={}, status="delivered",
                    submitted_at=datetime.now(UTC) - timedelta(hours=1))
            for n in range(2000001, 2000001 + people)
        )  # fmt: skip


TEMPLATE = "  type: template\n  template: {name: hello_world, language: en_US}\n"
TEXT = '  type: text\n  text: {body: "Thanks for writing"}\n'


@pytest.mark.parametrize(
    ("portfolio", "message", "sent_now"),
    [
        ({"acme": ["+4790000000", SIBLING]}, TEMPLATE, 50),  # 200 of 250 used by the sibling
        ({}, TEMPLATE, 100),  # another portfolio: its people do not count here
        ({"acme": ["+4790000000", SIBLING]}, TEXT, 100),  # answers in a care window: free
    ],
    ids=["same-portfolio", "own-portfolio", "not-business-initiated"],
)
@pytest.mark.parametrize("simulator", [{"messaging_tier": "TIER_250"}], indirect=True)
def test_the_tier_counts_template_messages_of_every_sender_of_the_portfolio(
    db: Database,
    link: LinkClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    portfolio: dict[str, list[str]],
    message: str,
    sent_now: int,
) -> None:
    monkeypatch.setenv("SENDER_PORTFOLIOS", json.dumps(portfolio))
    get_settings.cache_clear()
    try:
        sent_yesterday_evening(db, tmp_path / "sibling", message, 200)
        campaign_id = prepared(db, link, tmp_path / "c", 100)
    finally:
        get_settings.cache_clear()
    with db.session() as session:
        batches = session.execute(
            select(Batch.state, Batch.size).where(Batch.campaign_id == campaign_id)
        ).all()
    assert sum(b.size for b in batches if b.state == BatchState.PENDING) == sent_now


@pytest.mark.parametrize("simulator", [{"messaging_tier": "TIER_250"}], indirect=True)
def test_a_campaign_answering_people_in_their_care_window_is_not_held_by_the_tier(
    db: Database, link: LinkClient, tmp_path: Path
) -> None:
    people = [f"+479{n:07d}" for n in range(1000001, 1000301)]
    with db.session() as session:
        session.add_all(
            CareWindow(business="+4790000000", identifier=p, last_incoming_at=datetime.now(UTC))
            for p in people
        )
    tmp_path.mkdir(exist_ok=True)
    spec = SPEC.replace("SENDER_EXTRA", "").replace("template_category: marketing\n", "")
    (tmp_path / "campaign.yaml").write_text(spec.replace(TEMPLATE, TEXT))
    (tmp_path / "people.csv").write_text("phone\n" + "\n".join(people) + "\n")
    campaign_id = create_campaign(db, load_campaign(tmp_path))
    prepare.prepare_campaign(db, link, campaign_id, reports_dir=tmp_path / "reports")
    with db.session() as session:
        states = set(session.scalars(select(Batch.state).where(Batch.campaign_id == campaign_id)))
        sizes = sum(session.scalars(select(Batch.size).where(Batch.campaign_id == campaign_id)))
    assert (states, sizes) == ({BatchState.PENDING}, 300)
