"""The console's read models of one campaign (failures, timeline, merged and rejected
rows) on both databases, over campaigns built the way the other operations tests build
them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from dispatcher.db import Batch, Campaign, Database, Message
from dispatcher.operations import insight
from dispatcher.preparation import prepare
from dispatcher.status import CampaignState, MessageStatus, SkipReason
from tests.integration.conftest import BSUID, OFFLINE, campaign, make_batch

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PHONE = "+4791234567"


def seeded(db: Database, states: list[dict[str, Any]], *, final: bool = True) -> int:
    """A campaign with one message per entry of ``states`` (the message's new values)."""
    batch_id = make_batch(db, [f"+47912345{i:02d}" for i in range(len(states))],
                          link_ids=[f"m{i}" for i in range(len(states))])  # fmt: skip
    with db.session() as session:
        campaign_id = session.scalar(select(Batch.campaign_id).where(Batch.id == batch_id))
        ids = session.scalars(
            select(Message.id).where(Message.batch_id == batch_id).order_by(Message.position)
        ).all()
        for message_id, values in zip(ids, states, strict=True):
            session.execute(update(Message).where(Message.id == message_id).values(**values))
        if final:
            session.execute(
                update(Campaign)
                .where(Campaign.id == campaign_id)
                .values(state=CampaignState.COMPLETED)
            )
    assert campaign_id is not None
    return campaign_id


def failed(result_code: int | None, whatsapp: int | None, description: str) -> dict[str, Any]:
    return {"status": MessageStatus.FAILED, "result_code": result_code,
            "whatsapp_error_code": whatsapp, "result_description": description}  # fmt: skip


def test_failures_are_grouped_by_outcome_largest_first_explained_and_masked(
    db: Database,
) -> None:
    ecosystem = failed(112403, 131049, f"(#131049) not delivered to {PHONE}")
    campaign_id = seeded(db, [
        ecosystem, ecosystem, ecosystem,
        failed(112404, None, "Invalid contact."), failed(112404, None, "Invalid contact."),
        failed(None, None, "in doubt: the request got no answer and no report came"),
        failed(None, None, "Meta 500: Internal Server Error"),
        {"status": MessageStatus.SKIPPED, "skip_reason": SkipReason.CARE_WINDOW_CLOSED},
        {"status": MessageStatus.EXPIRED, "result_code": 112403, "whatsapp_error_code": 131049},
        {"status": MessageStatus.UNKNOWN, "result_code": 12409},
        {"status": MessageStatus.DELIVERED}, {"status": MessageStatus.READ},
        {"status": MessageStatus.SUBMITTED},
    ])  # fmt: skip
    with db.session() as session:
        groups = insight.failures(session, campaign_id)
    outline = [(g.count, g.status, g.explanation.code, g.explanation.retried) for g in groups]
    assert outline[:2] == [(3, "failed", "131049", True), (2, "failed", "LINK 112404", False)]
    assert sorted(outline[2:]) == [
        (1, "expired", "expired", False),
        (1, "failed", "failed", False),
        (1, "in_doubt", "in_doubt", False),
        (1, "skipped", "care_window_closed", False),
        (1, "unknown", "LINK 12409", False),
    ]
    assert groups[0].sample_description == "(#131049) not delivered to +479•••••67"
    assert groups[0].as_dict()["explanation"]["title"] == "Meta chose not to deliver"
    assert PHONE not in repr([g.as_dict() for g in groups])


def test_a_campaign_without_failures_has_no_groups(db: Database) -> None:
    campaign_id = seeded(db, [{"status": MessageStatus.DELIVERED}])
    with db.session() as session:
        assert insight.failures(session, campaign_id) == []


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_the_timeline_counts_submissions_per_interval_and_outcomes_cumulatively(
    db: Database,
) -> None:
    campaign_id = seeded(db, [
        {"submitted_at": at(0), "sent_at": at(5), "delivered_at": at(10), "read_at": at(50),
         "status": MessageStatus.READ},
        {"submitted_at": at(1), "sent_at": at(6), "failed_at": at(30),
         "status": MessageStatus.FAILED},
        {"submitted_at": at(31), "delivered_at": at(40), "status": MessageStatus.DELIVERED},
        {"submitted_at": at(59), "delivered_at": at(60), "status": MessageStatus.DELIVERED},
        # failed once, then sent again and delivered: not a failure any more
        {"submitted_at": at(2), "failed_at": at(3), "delivered_at": at(20),
         "status": MessageStatus.DELIVERED},
        {"status": MessageStatus.PENDING},
    ])  # fmt: skip
    with db.session() as session:
        found = insight.timeline(session, campaign_id, buckets=6)
    assert (found.start, found.end, found.bucket_seconds) == (T0, at(60), 10.0)
    assert [p.start for p in found.points] == [at(10 * i) for i in range(6)]
    assert [p.submitted for p in found.points] == [3, 0, 0, 1, 0, 1]
    assert [p.send_rate for p in found.points] == [0.3, 0, 0, 0.1, 0, 0.1]
    assert [p.sent for p in found.points] == [2] * 6
    assert [p.delivered for p in found.points] == [0, 1, 2, 2, 3, 4]  # the last at its end
    assert [p.read for p in found.points] == [0, 0, 0, 0, 0, 1]
    assert [p.failed for p in found.points] == [0, 0, 0, 1, 1, 1]
    assert found.as_dict()["points"][1]["start"] == "2026-03-01T12:00:10+00:00"


def test_a_running_campaigns_timeline_reaches_now_in_at_most_the_buckets_asked(
    db: Database,
) -> None:
    campaign_id = seeded(db, [{"submitted_at": at(0)}, {"submitted_at": at(7)}], final=False)
    with db.session() as session:
        found = insight.timeline(session, campaign_id, buckets=60, now=at(3600))
        short = insight.timeline(session, campaign_id, buckets=60, now=at(7))
    assert (found.end, found.bucket_seconds, len(found.points)) == (at(3600), 60.0, 60)
    assert found.points[0].submitted == 2
    # the last interval holds its end: the one submitted at "now"
    assert (short.bucket_seconds, [p.submitted for p in short.points]) == (1.0, [1] + [0] * 5 + [1])


def test_a_campaign_nothing_was_submitted_for_has_an_empty_timeline(db: Database) -> None:
    campaign_id = seeded(db, [{"status": MessageStatus.PENDING}], final=False)
    with db.session() as session:
        found = insight.timeline(session, campaign_id)
        missing = insight.timeline(session, campaign_id + 1)
    assert found.points == missing.points == ()
    assert found.as_dict()["start"] is None


def test_merged_and_rejected_rows_come_with_lines_and_reasons_and_masked_identifiers(
    db: Database, tmp_path: Path
) -> None:
    rows = [f"{PHONE},", "+4791234568,", f"0047{PHONE[3:]},", f",{BSUID}", "12,", "not a phone,"]
    campaign_id = campaign(db, tmp_path / "c", rows)
    with db.session() as session:
        before = insight.rejects(session, campaign_id)
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=True)
    with db.session() as session:
        merged = insight.merges(session, campaign_id)
        rejected = insight.rejects(session, campaign_id)
        first = insight.rejects(session, campaign_id, limit=1)
    assert [(m.line, m.kept_line, m.identifiers) for m in merged] == [(4, 2, ("+479•••••67",))]
    assert merged[0].description == "merged into line 2: same phone number as line 2"
    assert merged[0].as_dict()["identifiers"] == ["+479•••••67"]
    assert (before.stored, rejected.stored, rejected.total) == (False, True, 2)
    assert [(r.file, r.line) for r in rejected.rows] == [("people.csv", 6), ("people.csv", 7)]
    assert all(r.reason for r in rejected.rows)
    assert rejected.rows[1].values == {"phone": "not a phone", "bsuid": ""}
    assert [r.line for r in first.rows] == [6]
    assert rejected.as_dict()["rows"][0]["line"] == 6
    text = repr(rejected.as_dict()) + repr([m.as_dict() for m in merged])
    assert PHONE not in text and BSUID not in text
