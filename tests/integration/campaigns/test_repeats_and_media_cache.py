"""A campaign sent twice by mistake, and media ids that outlive the LINK they came from."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update

from dispatcher.campaigns.checks import preflight
from dispatcher.campaigns.registration import create_campaign, inputs_digest
from dispatcher.campaigns.spec import LoadedCampaign
from dispatcher.db import Batch, Campaign, Database, Media, Message
from dispatcher.errors import DispatcherError, RepeatedCampaignError
from dispatcher.interfaces.servers import ServerThread
from dispatcher.operations import control
from dispatcher.preparation.media import media_id_for, read_media
from dispatcher.providers.link import LinkClient, LinkCredentials
from dispatcher.simulator import SimulatorConfig, create_app
from dispatcher.status import BatchState, CampaignState, MessageStatus
from tests.conftest import ROOT
from tests.integration.conftest import make_batch


def loaded_from(folder: Path) -> LoadedCampaign:
    return preflight(folder).loaded


def mark_sent(db: Database, campaign_id: int) -> None:
    """As if the campaign had sent someone (a request LINK took) and finished."""
    batch_id = f"c{campaign_id}-b000001"
    with db.session() as session:
        session.add(Batch(id=batch_id, campaign_id=campaign_id, seq=1, payload={}, size=1,
                          state=BatchState.SUBMITTED))  # fmt: skip
        session.flush()
        session.add(
            Message(campaign_id=campaign_id, identity_key="+4791234567",
                    destination="+4791234567", source_line=2, params={}, batch_id=batch_id,
                    status=MessageStatus.DELIVERED, submitted_at=datetime.now(UTC))
        )  # fmt: skip
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(state="completed")
        )


# -- the same files again ---------------------------------------------------------------


def test_a_campaign_whose_files_were_sent_recently_is_refused_naming_the_earlier_one(
    db: Database, example_dir: Path, tmp_path: Path
) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    mark_sent(db, first)
    copy = tmp_path / "copied-again"
    shutil.copytree(example_dir, copy)  # another folder, the same contents
    with pytest.raises(RepeatedCampaignError, match=rf"campaign {first} of \d{{4}}-") as caught:
        create_campaign(db, loaded_from(copy))
    assert caught.value.earlier_id == first
    assert "--again" in str(caught.value)


def test_a_campaign_still_under_way_counts_as_sent(db: Database, example_dir: Path) -> None:
    first = create_campaign(db, loaded_from(example_dir))  # a draft: its worker is about to send
    with pytest.raises(RepeatedCampaignError) as caught:
        create_campaign(db, loaded_from(example_dir))
    assert caught.value.earlier_id == first


def test_a_campaign_whose_request_went_unanswered_counts_as_sent(
    db: Database, example_dir: Path
) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    with db.session() as session:  # cancelled after a request that got no answer
        session.add(Batch(id=f"c{first}-b000001", campaign_id=first, seq=1, payload={},
                          size=1, state=BatchState.IN_DOUBT))  # fmt: skip
        session.execute(update(Campaign).where(Campaign.id == first).values(state="cancelled"))
    with pytest.raises(RepeatedCampaignError):
        create_campaign(db, loaded_from(example_dir))


def test_again_sends_the_same_files_once_more(db: Database, example_dir: Path) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    mark_sent(db, first)
    second = create_campaign(db, loaded_from(example_dir), again=True)
    assert second != first


def test_the_spec_can_say_a_repeat_is_meant(db: Database, example_dir: Path) -> None:
    spec = example_dir / "campaign.yaml"
    spec.write_text(spec.read_text() + "allow_repeat: true\n")
    mark_sent(db, create_campaign(db, loaded_from(example_dir)))
    create_campaign(db, loaded_from(example_dir))


def test_a_repeat_to_a_simulator_is_only_noted_on_the_campaign(
    db: Database, example_dir: Path
) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    mark_sent(db, first)
    second = create_campaign(db, loaded_from(example_dir), only_noted=lambda _: True)
    with db.session() as session:
        notes = session.scalar(select(Campaign.notes).where(Campaign.id == second))
    assert notes is not None and f"repeats campaign {first} of" in notes[0]


@pytest.mark.parametrize(
    "earlier_state", [CampaignState.PREVIEWED, CampaignState.FAILED, CampaignState.CANCELLED]
)
def test_a_campaign_that_never_sent_anyone_is_no_reason_to_refuse(
    db: Database, example_dir: Path, earlier_state: CampaignState
) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    with db.session() as session:
        session.execute(update(Campaign).where(Campaign.id == first).values(state=earlier_state))
    create_campaign(db, loaded_from(example_dir))


def test_changed_recipients_or_another_sender_are_a_new_campaign(
    db: Database, example_dir: Path
) -> None:
    mark_sent(db, create_campaign(db, loaded_from(example_dir)))
    csv_file = example_dir / "recipients.csv"
    csv_file.write_text(csv_file.read_text() + "+4791111111,Ola,Oslo\n")
    create_campaign(db, loaded_from(example_dir))  # one more person: not the same list
    spec = example_dir / "campaign.yaml"
    spec.write_text(spec.read_text().replace('"+4790000000"', '"+4790000001"'))
    assert "+4790000001" in spec.read_text()
    create_campaign(db, loaded_from(example_dir))


def test_a_repeat_older_than_the_guard_is_sent(db: Database, example_dir: Path) -> None:
    first = create_campaign(db, loaded_from(example_dir))
    mark_sent(db, first)
    with db.session() as session:
        session.execute(
            update(Campaign)
            .where(Campaign.id == first)
            .values(created_at=datetime.now(UTC) - timedelta(days=31))
        )
    create_campaign(db, loaded_from(example_dir))
    with pytest.raises(RepeatedCampaignError):
        create_campaign(db, loaded_from(example_dir), repeat_guard=timedelta(days=60))


def test_the_digest_covers_spec_recipients_and_media_by_content(example_dir: Path) -> None:
    before = inputs_digest(loaded_from(example_dir))
    (example_dir / "banner.png").write_bytes((example_dir / "banner.png").read_bytes() + b"\0")
    assert inputs_digest(loaded_from(example_dir)) != before


# -- deleting what never sent ------------------------------------------------------------


def test_a_preview_is_deleted_with_its_people_and_batches(db: Database) -> None:
    batch_id = make_batch(db, ["+4791234567", "+4791234568"])
    with db.session() as session:
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
        session.execute(update(Batch).where(Batch.id == batch_id).values(state=BatchState.PENDING))
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(state="previewed")
        )
    with db.session() as session:
        assert control.delete(session, campaign_id).name == "t"
    with db.session() as session:
        assert session.get(Campaign, campaign_id) is None
        for table in (Message, Batch):
            left = session.scalars(select(table).where(table.campaign_id == campaign_id))
            assert left.all() == []


def test_a_campaign_that_sent_requests_is_kept(db: Database) -> None:
    batch_id = make_batch(db, ["+4791234567"], link_ids=["m1"])
    with db.session() as session:
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
        session.execute(
            update(Campaign).where(Campaign.id == campaign_id).values(state="cancelled")
        )
    with pytest.raises(DispatcherError, match="record of who was messaged"), db.session() as s:
        control.delete(s, campaign_id)
    with db.session() as session:
        assert session.get(Campaign, campaign_id) is not None


def test_a_sending_campaign_cannot_be_deleted(db: Database) -> None:
    batch_id = make_batch(db, ["+4791234567"])
    with db.session() as session:
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
    with pytest.raises(DispatcherError, match="is sending"), db.session() as session:
        control.delete(session, campaign_id)


# -- media ids belong to the LINK that took them ---------------------------------------------


def start_simulator() -> ServerThread:
    config = SimulatorConfig(username="u", password="pw", platform_id="P")
    return ServerThread(create_app(config)).start()


def client_of(url: str, username: str = "u") -> LinkClient:
    return LinkClient(LinkCredentials(url, username, "pw", "P", "1"))


@pytest.fixture()
def banner() -> Iterator[object]:
    yield read_media(ROOT / "campaigns" / "example" / "banner.png", "image")


def uploads(url: str) -> int:
    return int(httpx.get(f"{url}/_simulator/stats", timeout=5).json()["media_uploads"])


def test_a_media_id_is_reused_while_the_simulator_that_took_it_runs(
    db: Database, banner: object
) -> None:
    server = start_simulator()
    try:
        with client_of(server.url) as client:
            first = media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
            again = media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
        assert again == first
        assert uploads(server.url) == 1
    finally:
        server.stop()


def test_a_restarted_simulator_gets_the_media_again(db: Database, banner: object) -> None:
    server = start_simulator()
    try:
        with client_of(server.url) as client:
            first = media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
        httpx.post(f"{server.url}/_simulator/reset", timeout=5)  # forgets every upload
        with client_of(server.url) as client:
            second = media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
        assert second != first
        assert uploads(server.url) == 1  # counted since the reset
        with db.session() as session:
            rows = session.scalars(select(Media)).all()
        assert [row.media_id for row in rows] == [second]
    finally:
        server.stop()


def test_another_link_account_does_not_share_media_ids(db: Database, banner: object) -> None:
    one, other = start_simulator(), start_simulator()
    try:
        with client_of(one.url) as client:
            media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
        with client_of(other.url) as client:
            media_id_for(db, client, "+4790000000", banner)  # type: ignore[arg-type]
        assert uploads(other.url) == 1
    finally:
        one.stop()
        other.stop()
