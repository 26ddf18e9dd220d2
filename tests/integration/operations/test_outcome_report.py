"""The outcome report (``dispatcher report ID``): one line per input line, kept or
merged, with times in UTC, on both databases."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text, update

from dispatcher.db import Campaign, Database, MergedRow, Message
from dispatcher.operations import progress
from dispatcher.operations.reports import write_outcomes
from dispatcher.preparation import prepare
from tests.integration.conftest import BSUID, OFFLINE, campaign, dlr, make_batch, receive


def report(db: Database, campaign_id: int, time_zone: str | None = None) -> list[dict[str, str]]:
    """The report as ``dispatcher report`` writes it; PostgreSQL hands times back in
    ``time_zone`` when one is given."""
    handle = io.StringIO()
    with db.session() as session:
        if time_zone and db.engine.dialect.name == "postgresql":
            session.execute(text(f"SET LOCAL TIME ZONE '{time_zone}'"))
        write_outcomes(handle, progress.outcomes(session, campaign_id))
    return list(csv.DictReader(io.StringIO(handle.getvalue())))


def outline(lines: list[dict[str, str]]) -> list[tuple[str, str, str, str]]:
    return [(r["line"], r["identifiers"], r["status"], r["result_description"]) for r in lines]


def test_every_merged_line_is_in_the_report_with_the_line_it_was_merged_into(
    db: Database, tmp_path: Path
) -> None:
    rows = ["+4791234567,", "+4791234568,", "004791234567,", f",{BSUID}", f"+4791234568,{BSUID}"]
    campaign_id = campaign(db, tmp_path / "c", rows)
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=True)
    lines = report(db, campaign_id)
    assert outline(lines) == [
        ("2", "+4791234567", "queued", ""),
        ("3", f"+4791234568 {BSUID}", "queued", ""),
        ("4", "+4791234567", "merged", "merged into line 2: same phone number as line 2"),
        ("5", BSUID, "merged", "merged into line 3: BSUID linked to line 3 by line 6"),
        ("6", f"+4791234568 {BSUID}", "merged", "merged into line 3: same phone number as line 3"),
    ]
    merged = [r for r in lines if r["status"] == "merged"]
    assert {c for r in merged for k, c in r.items() if k not in ("line", "identifiers", "status",
            "result_description")} == {""}  # fmt: skip


def test_a_link_only_the_identity_book_knows_is_the_reason_a_line_is_merged(
    db: Database, tmp_path: Path
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    receive(db, dlr("m1", 112006, custom={"destination": "+4791234567", "whatsappUserId": BSUID}))
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,", f",{BSUID}"])
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=True)
    assert outline(report(db, campaign_id))[1] == (
        "3", BSUID, "merged", "merged into line 2: BSUID linked to line 2 by the identity book "
        "(learned from LINK's reports, not from this list)",
    )  # fmt: skip


def test_a_preparation_run_again_records_each_merged_line_once(
    db: Database, tmp_path: Path
) -> None:
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,", "+4791234567,", "+4791234567,"])
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path)
    with db.session() as session:  # as if the worker had died before the end
        session.execute(update(Campaign).where(Campaign.id == campaign_id).values(prepared_at=None))
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path)
    with db.session() as session:
        stored = session.scalar(select(func.count()).where(MergedRow.campaign_id == campaign_id))
        prepared = session.scalar(select(Campaign.prepared_at).where(Campaign.id == campaign_id))
    assert (stored, prepared is not None) == (2, True)
    assert [r["line"] for r in report(db, campaign_id)] == ["2", "3", "4"]


def test_report_times_are_iso_8601_in_utc_to_the_second(db: Database) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    moment = datetime(2026, 12, 2, 4, 25, 28, 123456, tzinfo=UTC)
    with db.session() as session:
        session.execute(update(Message).values(submitted_at=moment, sent_at=moment))
        campaign_id = session.scalar(select(Message.campaign_id))
    assert campaign_id is not None
    (line,) = report(db, campaign_id, time_zone="Europe/Oslo")
    assert (line["submitted_at"], line["sent_at"], line["delivered_at"]) == (
        "2026-12-02T04:25:28+00:00",
        "2026-12-02T04:25:28+00:00",
        "",
    )
