"""The drop folder (``dispatcher.campaigns.dropfolder``) on real files, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dispatcher.campaigns import dropfolder
from dispatcher.db import Campaign, Database
from dispatcher.status import CampaignState
from tests.conftest import ROOT

EXAMPLE = ROOT / "campaigns" / "example"


@pytest.fixture()
def drop(tmp_path: Path) -> dropfolder.DropFolder:
    made = dropfolder.DropFolder(tmp_path / "drop", settle_seconds=5)
    made.ensure()
    return made


def place(drop: dropfolder.DropFolder, name: str, *, age: float = 60) -> Path:
    """Copy the example campaign into the inbox, its files last touched ``age`` s ago."""
    folder = drop.inbox / name
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("reports"))
    then = time.time() - age
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (then, then))
    return folder


def test_a_complete_folder_is_taken_queued_and_filed_as_done_once_prepared(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    place(drop, "spring")
    queued: list[int] = []
    [taken] = dropfolder.take_new(drop, db, queued.append)
    assert taken.error is None and queued == [taken.campaign_id]
    assert taken.folder == drop.processing / "spring"
    assert (taken.folder / dropfolder.ID_FILE).read_text().strip() == str(taken.campaign_id)
    assert list(drop.inbox.iterdir()) == []
    assert dropfolder.take_new(drop, db, queued.append) == []  # taken once
    assert dropfolder.file_finished(drop, db) == []  # not prepared yet: stays
    with db.session() as session:
        campaign = session.get(Campaign, taken.campaign_id)
        assert campaign is not None and campaign.spec_path.startswith(str(drop.processing))
        campaign.prepared_at = datetime.now(UTC)
        campaign.state = CampaignState.SENDING
    [filed] = dropfolder.file_finished(drop, db)
    assert filed.folder == drop.done / "spring" and filed.folder.is_dir()
    with db.session() as session:
        campaign = session.get(Campaign, taken.campaign_id)
        assert campaign is not None
        assert campaign.spec_path == str((drop.done / "spring" / "campaign.yaml").resolve())


def test_a_broken_campaign_lands_in_failed_with_a_readable_error(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    folder = place(drop, "broken")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("level: STANDARD", "level: TURBO"))
    os.utime(spec, (time.time() - 60, time.time() - 60))
    os.utime(folder, (time.time() - 60, time.time() - 60))
    queued: list[int] = []
    [taken] = dropfolder.take_new(drop, db, queued.append)
    assert queued == [] and taken.campaign_id is None
    assert taken.folder == drop.failed / "broken"
    error = (taken.folder / dropfolder.ERROR_FILE).read_text()
    assert error.startswith("Campaign spec error in campaign.yaml:")
    assert "sender.level" in error and "Traceback" not in error


def test_a_folder_whose_csv_lacks_a_column_is_filed_with_a_recipients_file_problem(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    folder = place(drop, "no-shop")
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace("{store}", "{shop}"))
    os.utime(spec, (time.time() - 60, time.time() - 60))
    os.utime(folder, (time.time() - 60, time.time() - 60))
    [taken] = dropfolder.take_new(drop, db, [].append)
    error = (taken.folder / dropfolder.ERROR_FILE).read_text()
    assert error.startswith(
        "Recipients file problem in recipients.csv:\n"
        "  recipients[0]: recipients.csv has no column shop (the message uses {shop}); "
        "its columns are phone, first_name, store:"
    )


def test_a_folder_still_being_written_is_not_taken(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    place(drop, "fresh", age=0)  # just written
    place(drop, "copying")
    (drop.inbox / "copying" / ".people.csv.x1Yz").write_text("phone\n+47")  # rsync's temp
    queued: list[int] = []
    assert dropfolder.take_new(drop, db, queued.append) == []
    assert sorted(p.name for p in drop.inbox.iterdir()) == ["copying", "fresh"]
    (drop.inbox / "fresh" / dropfolder.READY_MARKER).touch()  # the writer says it is done
    [taken] = dropfolder.take_new(drop, db, queued.append)
    assert taken.folder.name == "fresh" and len(queued) == 1


def test_a_campaign_refused_in_preparation_is_filed_as_failed_with_its_reason(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    place(drop, "blocked")
    [taken] = dropfolder.take_new(drop, db, lambda _: None)
    with db.session() as session:
        campaign = session.get(Campaign, taken.campaign_id)
        assert campaign is not None
        campaign.state = CampaignState.FAILED
        campaign.error = "LINK says the sender is BLOCKED: 131031 account locked"
    [filed] = dropfolder.file_finished(drop, db)
    assert filed.folder == drop.failed / "blocked"
    assert "BLOCKED" in (filed.folder / dropfolder.ERROR_FILE).read_text()
    place(drop, "blocked")  # the same name dropped again does not collide
    [again] = dropfolder.take_new(drop, db, lambda _: None)
    assert again.folder == drop.processing / "blocked"


def test_send_task_labels_name_the_campaign_for_flower_search_and_hold_no_numbers(
    db: Database, drop: dropfolder.DropFolder
) -> None:
    from flower.utils.search import _kwargs_pairs  # Flower's own parser for its search

    from dispatcher.db import Batch
    from dispatcher.sending import labels as tasklabels

    place(drop, "spring")
    [taken] = dropfolder.take_new(drop, db, lambda _: None)
    cid = taken.campaign_id
    assert cid is not None
    ids = [f"c{cid}-b{seq:06d}" for seq in (1, 2, 3)]
    with db.session() as session:
        for seq, (batch_id, size) in enumerate(zip(ids, (80, 80, 30), strict=True), start=1):
            session.add(Batch(id=batch_id, campaign_id=cid, seq=seq, state="pending",
                              payload={"messages": []}, size=size))  # fmt: skip
    with db.session() as session:
        label = tasklabels.send_label(session, cid, ids)
        assert tasklabels.campaigns_of(session, ids) == {cid: ids}
    pairs = _kwargs_pairs(label)
    assert f"campaign_id={cid}" in pairs
    assert "campaign=spring sale 2026" in pairs and "destinations=190" in pairs
    assert "+47" not in label
