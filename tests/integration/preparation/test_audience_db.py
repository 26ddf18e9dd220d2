"""People resolution against the database: identity book, unique guard, suppressions,
writing in chunks that are dispatched early, and resuming an interrupted preparation."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Batch, Campaign, Database, Message, Suppression
from dispatcher.preparation import batching, prepare
from dispatcher.status import CampaignState
from tests.integration.conftest import BSUID, OFFLINE, campaign, dlr, make_batch, receive
from tests.integration.conftest import PHONE_AND_BSUID_SPEC as SPEC


def messages(db: Database, campaign_id: int) -> list[tuple[str, str]]:
    with db.session() as session:
        return [
            (m.identity_key, m.destination)
            for m in session.scalars(
                select(Message).where(Message.campaign_id == campaign_id).order_by(Message.id)
            )
        ]


def row(db: Database, campaign_id: int) -> Campaign:
    with db.session() as session:
        found = session.get(Campaign, campaign_id)
        assert found is not None
        session.expunge(found)
        return found


def test_a_bsuid_learned_from_a_dlr_makes_the_next_campaign_send_once(
    db: Database, tmp_path: Path
) -> None:
    rows = ["+4791234567,", f",{BSUID}"]
    before = campaign(db, tmp_path / "before", rows)
    prepare.prepare_campaign(db, OFFLINE, before, reports_dir=tmp_path, dry_run=True)
    assert len(messages(db, before)) == 2  # nothing links them yet

    make_batch(db, ["+4791234567"], link_ids=["m1"])
    receive(db, dlr("m1", 112006, custom={"destination": "+4791234567", "whatsappUserId": BSUID}))

    after = campaign(db, tmp_path / "after", rows)
    prepare.prepare_campaign(db, OFFLINE, after, reports_dir=tmp_path, dry_run=True)
    ((_, destination),) = messages(db, after)
    assert destination == "+4791234567"
    with db.session() as session:
        identifiers = session.scalar(
            select(Message.identifiers).where(Message.campaign_id == after)
        )
    assert identifiers == ["+4791234567", BSUID]
    assert (row(db, after).duplicates, row(db, after).state) == (1, CampaignState.PREVIEWED)


def test_the_database_refuses_a_second_message_for_one_person(db: Database) -> None:
    batch_id = make_batch(db, ["+4791234567"])
    with pytest.raises(IntegrityError), db.session() as session:
        batch = session.get(Batch, batch_id)
        assert batch is not None
        session.add(
            Message(
                campaign_id=batch.campaign_id,
                identity_key="+4791234567",
                destination="+4791234567",
                source_line=3,
                params={},
                status="queued",
            )
        )


def test_opting_out_by_bsuid_covers_the_phone_number_the_book_links(
    db: Database, tmp_path: Path
) -> None:
    make_batch(db, ["+4791234567"], link_ids=["m1"])
    receive(db, dlr("m1", 112006, custom={"destination": "+4791234567", "whatsappUserId": BSUID}))
    with db.session() as session:
        session.add(Suppression(identifier=BSUID, reason="STOP"))
    campaign_id = campaign(db, tmp_path / "c", ["+4791234567,", "+4791234568,"])
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=True)
    assert [d for _, d in messages(db, campaign_id)] == ["+4791234568"]
    rejects = Path(row(db, campaign_id).rejects_path or "").read_text()
    assert "2,suppressed (opted out)" in rejects


class Killed(BaseException):
    """Stands for kill -9: no ``except Exception`` sees it."""


def people(count: int) -> list[str]:
    return [f"+479{n:07d}," for n in range(1000001, 1000001 + count)]


def test_batches_go_out_while_later_people_are_still_written(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "CHUNK_MESSAGES", 10)
    campaign_id = campaign(db, tmp_path / "c", people(40))
    handed_out: list[tuple[list[str], bool, str]] = []

    def dispatch(batch_ids: list[str], *, fresh: bool = False) -> None:
        assert fresh  # written just now: their creation time stands for the hand-out
        current = row(db, campaign_id)
        handed_out.append((batch_ids, current.prepared_at is None, current.state))

    written = prepare.prepare_campaign(
        db, OFFLINE, campaign_id, reports_dir=tmp_path, dispatch=dispatch
    )
    assert len(written) == 8  # 40 people in batches of 5
    assert [len(ids) for ids, _, _ in handed_out] == [2, 2, 2, 2]
    assert all(early and state == CampaignState.SENDING for _, early, state in handed_out)
    assert row(db, campaign_id).prepared_at is not None


def test_a_new_databases_first_campaign_leaves_the_planner_knowing_its_messages(
    db: Database, tmp_path: Path
) -> None:
    """Without statistics the planner reads a slice's messages by a full scan of the
    table; the preparation analyses the tables it grew from nothing."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    campaign_id = campaign(db, tmp_path / "c", people(40))
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path)
    with db.session() as session:
        rows = session.execute(
            text(
                "SELECT relname, reltuples FROM pg_class"
                " WHERE oid IN ('batches'::regclass, 'messages'::regclass)"
            )
        )
        believed = {table: tuples for table, tuples in rows}
    assert believed == {"batches": 8, "messages": 40}


def test_statistics_that_cannot_be_taken_stop_nothing(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A maintenance job holding the tables (here: a lock ANALYZE waits for) costs the
    preparation two seconds and a warning, not the campaign."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL's planner statistics")
    campaign_id = campaign(db, tmp_path / "c", people(40))
    handed_out: list[str] = []
    with db.engine.connect() as other:
        other.execute(text("LOCK TABLE batches IN SHARE UPDATE EXCLUSIVE MODE"))
        written = prepare.prepare_campaign(
            db,
            OFFLINE,
            campaign_id,
            reports_dir=tmp_path,
            dispatch=lambda ids, fresh=False: handed_out.extend(ids),
        )
        other.rollback()
    assert len(written) == 8 and sorted(handed_out) == sorted(written)
    assert row(db, campaign_id).prepared_at is not None
    assert "could not analyse the batches and messages tables" in caplog.text


def test_an_interrupted_preparation_resumes_without_writing_anyone_twice(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "CHUNK_MESSAGES", 10)
    campaign_id = campaign(db, tmp_path / "c", people(40))

    def crash(batch_ids: list[str], *, fresh: bool = False) -> None:
        raise Killed  # the process dies here: nothing of ours runs after it

    with pytest.raises(Killed):
        prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dispatch=crash)
    assert 0 < len(messages(db, campaign_id)) < 40  # some chunks committed, then the crash
    assert row(db, campaign_id).prepared_at is None

    with db.session() as session:
        before = set(session.scalars(select(Batch.id).where(Batch.campaign_id == campaign_id)))
    handed_out: list[str] = []
    stale: list[str] = []  # handed out again: not written by this run, so stamped

    def dispatch(batch_ids: list[str], *, fresh: bool = False) -> None:
        handed_out.extend(batch_ids)
        if not fresh:
            stale.extend(batch_ids)

    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dispatch=dispatch)
    destinations = [d for _, d in messages(db, campaign_id)]
    assert sorted(destinations) == sorted(p.rstrip(",") for p in people(40))
    with db.session() as session:
        batches = list(session.scalars(select(Batch.id).where(Batch.campaign_id == campaign_id)))
        sizes = session.scalar(select(func.sum(Batch.size)).where(Batch.campaign_id == campaign_id))
    assert sorted(handed_out) == sorted(batches)  # the first chunk's batches handed out again
    assert sorted(stale) == sorted(before)
    assert sizes == 40
    assert row(db, campaign_id).prepared_at is not None


PERSONAL = SPEC.replace(
    "template: {name: hello_world, language: en_US}",
    "template: {name: hello, language: en, components: [{type: body, parameters: "
    '[{type: text, text: "{first_name}"}]}]}',
).replace("recipients: people.csv", "recipients: [a.csv, b.csv, c.csv]")


def test_each_file_s_own_column_order_fills_the_placeholders(db: Database, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(PERSONAL)
    (folder / "a.csv").write_text("phone,first_name\n+4791000001,Ada\n")
    (folder / "b.csv").write_text("first_name,city,phone\nBob,Oslo,+4791000002\n")
    (folder / "c.csv").write_text("city,phone,first_name\nBergen,+4791000003,Cy\n")
    campaign_id = create_campaign(db, load_campaign(folder))
    prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dry_run=True)
    with db.session() as session:
        params = dict(
            session.execute(
                select(Message.destination, Message.params).where(
                    Message.campaign_id == campaign_id
                )
            ).all()
        )
    assert params == {
        "+4791000001": {"first_name": "Ada"},
        "+4791000002": {"first_name": "Bob"},
        "+4791000003": {"first_name": "Cy"},
    }


def test_an_unexpected_error_half_way_fails_the_campaign_with_the_reason(
    db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batching, "CHUNK_MESSAGES", 10)
    campaign_id = campaign(db, tmp_path / "c", people(40))

    def broken(batch_ids: list[str], *, fresh: bool = False) -> None:
        raise ConnectionError("broker gone")

    with pytest.raises(ConnectionError):
        prepare.prepare_campaign(db, OFFLINE, campaign_id, reports_dir=tmp_path, dispatch=broken)
    failed = row(db, campaign_id)
    assert failed.state == CampaignState.FAILED
    assert "ConnectionError: broker gone" in (failed.error or "")
