"""Campaign inputs and reports in the database: chunked, kept once, fetched, purged."""

from __future__ import annotations

import io
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, func, select

from dispatcher.campaigns import inputs
from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Campaign, Database, blobs
from dispatcher.db.models import Blob, BlobChunk, CampaignFile
from tests.conftest import copy_campaign


def test_a_campaign_s_files_are_stored_once_and_fetched_whole_with_their_names(
    db: Database, tmp_path: Path
) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    banner = folder / "banner.png"
    banner.write_bytes(os.urandom(blobs.CHUNK_BYTES * 2 + 12345))  # three chunks
    loaded = load_campaign(folder)
    first = create_campaign(db, loaded)
    second = create_campaign(db, loaded, again=True)
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(Blob)) == 3  # spec, csv, png
        assert session.scalar(select(func.count()).select_from(BlobChunk)) == 5
        names = session.execute(
            select(CampaignFile.role, CampaignFile.name).where(CampaignFile.campaign_id == second)
        ).all()
    assert sorted(names) == [
        ("media", "banner.png"),
        ("recipients", "recipients.csv"),
        ("spec", "campaign.yaml"),
    ]
    originals = {name: (folder / name).read_bytes() for name in ("recipients.csv", "banner.png")}
    shutil.rmtree(folder)  # nothing is read from here any more
    with inputs.materialized(db, first, loaded) as fetched:
        assert fetched.resolve("banner.png").name == "banner.png"
        assert fetched.resolve("banner.png").read_bytes() == originals["banner.png"]
        assert [p.read_bytes() for p in fetched.recipient_files()] == [originals["recipients.csv"]]
        temporary = fetched.resolve("banner.png").parent
    assert not temporary.exists()  # removed afterwards


def test_a_campaign_registered_before_inputs_were_stored_reads_its_folder(
    db: Database, tmp_path: Path
) -> None:
    loaded = load_campaign(copy_campaign("example", tmp_path / "example"))
    with db.session() as session:
        campaign = Campaign(name="old", spec={}, spec_path=str(loaded.spec_path), source="+47")
        campaign.state = "draft"
        session.add(campaign)
        session.flush()
        campaign_id = campaign.id
    with inputs.materialized(db, campaign_id, loaded) as fetched:
        assert fetched is loaded


def test_reports_are_fetched_from_storage_and_purged_after_retention(
    db: Database, tmp_path: Path
) -> None:
    loaded = load_campaign(copy_campaign("example", tmp_path / "example"))
    ended, running = create_campaign(db, loaded), create_campaign(db, loaded, again=True)
    rejects = tmp_path / "rejects.csv"
    rejects.write_text("line,reason\n14,invalid phone number\n")
    with db.session() as session:
        for campaign_id in (ended, running):
            inputs.store_report(session, campaign_id, inputs.REJECTS, rejects)
        inputs.store_report(session, ended, inputs.REJECTS, rejects)  # replaced, not twice
    fetched = io.BytesIO()
    assert inputs.fetch_report(db, ended, inputs.REJECTS, fetched)
    assert fetched.getvalue() == rejects.read_bytes()
    now = datetime.now(UTC)
    with db.session() as session:
        old = session.get(Campaign, ended)
        assert old is not None
        old.state, old.finished_at = "completed", now - timedelta(days=100)
        session.get(Campaign, running).state = "sending"  # type: ignore[union-attr]

    assert inputs.purge(db, timedelta(days=90), now=now) == inputs.Purged(1, 4, 0)
    with db.session() as session:
        kept = set(session.scalars(select(CampaignFile.campaign_id)))
    assert kept == {running}  # the running one shares every content: none dropped
    assert not inputs.fetch_report(db, ended, inputs.REJECTS, io.BytesIO())
    with db.session() as session:
        session.get(Campaign, running).state = "completed"  # type: ignore[union-attr]
        session.get(Campaign, running).finished_at = now - timedelta(days=91)  # type: ignore[union-attr]
    assert inputs.purge(db, timedelta(days=90), now=now) == inputs.Purged(1, 4, 4)


def test_contents_of_a_deleted_campaign_go_even_when_files_are_kept_for_ever(
    db: Database, tmp_path: Path
) -> None:
    campaign_id = create_campaign(db, load_campaign(copy_campaign("example", tmp_path / "e")))
    with db.session() as session:
        session.execute(delete(Campaign).where(Campaign.id == campaign_id))
    assert inputs.purge(db, None) == inputs.Purged(0, 0, 3)  # RETENTION_DAYS=0
    with db.session() as session:
        assert session.scalar(select(func.count()).select_from(BlobChunk)) == 0
