"""Sending windows in the recipient's local time (``dispatcher.sending.windows``): with a fake
clock for the holding and releasing, and through the fan-out sender for real."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from dispatcher.campaigns.registration import create_campaign
from dispatcher.campaigns.spec import load_campaign
from dispatcher.db import Batch, Database, Message
from dispatcher.preparation.prepare import prepare_campaign
from dispatcher.sending import fanout, windows
from dispatcher.sending.batch import Outcome, SendContext
from tests.conftest import BOTH, through
from tests.integration.conftest import PERSONAL_SPEC as SPEC

OSLO = [f"+4791{n:06d}" for n in range(1, 6)]
NEW_YORK = [f"+1212555{n:04d}" for n in range(1, 6)]


def write(folder: Path, window: str, people: list[str], provider: str = "link") -> Path:
    folder.mkdir()
    (folder / "campaign.yaml").write_text(through(provider, SPEC) + window)
    rows = "\n".join(f"{p},P{i}" for i, p in enumerate(people))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    return folder


def zones_by_batch(db: Database) -> dict[str, set[str]]:
    with db.session() as session:
        rows = session.execute(select(Message.batch_id, Message.destination)).all()
    found: dict[str, set[str]] = {}
    for batch_id, destination in rows:
        found.setdefault(batch_id, set()).add(windows.zone_of(destination, "UTC"))
    return found


def test_people_wait_for_their_own_morning_and_go_when_it_comes(
    ctx: SendContext,
    tmp_path: Path,
) -> None:
    db = ctx.db
    # One message for all (no placeholder): people would share requests, but not zones.
    window = "sending_window: {start: '09:00', end: '20:00'}\nbatch_size: 50\n"
    folder = write(tmp_path / "c", window, OSLO + NEW_YORK)
    spec = folder / "campaign.yaml"
    spec.write_text(spec.read_text().replace('"{first_name}"', '"friend"'))
    loaded = load_campaign(folder)
    campaign_id = create_campaign(db, loaded)
    reports = tmp_path / "r"
    batch_ids = prepare_campaign(db, ctx.client, campaign_id, reports_dir=reports)
    by_batch = zones_by_batch(db)
    assert len(by_batch) == 2  # one request per zone, though one would hold them all
    assert all(len(zones) == 1 for zones in by_batch.values())
    assert {z for zones in by_batch.values() for z in zones} == {"Europe/Oslo", "America/New_York"}
    noon = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)  # 13:00 in Oslo, 07:00 in New York
    tuple_ = loaded.spec.sending_window.as_tuple()  # type: ignore[union-attr]
    with db.session() as session:
        held = windows.hold_closed(session, [(b, tuple_) for b in batch_ids], noon)
    [new_york] = [b for b, zones in by_batch.items() if zones == {"America/New_York"}]
    assert held == {new_york}
    with db.session() as session:
        batch = session.get(Batch, new_york)
        assert batch is not None and batch.state == "held"
        opens = batch.not_before.replace(tzinfo=batch.not_before.tzinfo or UTC)
    assert opens == datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # 09:00 in New York
    with db.session() as session:
        assert windows.release_held(session, opens - timedelta(seconds=1)) == []
    with db.session() as session:
        assert windows.release_held(session, opens) == [new_york]


@pytest.mark.parametrize(
    ("start", "end", "local", "open_"),
    [
        (time(9), time(20), time(8, 59), False),
        (time(9), time(20), time(9), True),
        (time(9), time(20), time(20), False),
        (time(22), time(6), time(23), True),  # across midnight
        (time(22), time(6), time(5, 59), True),
        (time(22), time(6), time(12), False),
    ],
)
def test_a_window_may_cross_midnight(start: time, end: time, local: time, open_: bool) -> None:
    assert windows.is_open(start, end, local) is open_


def test_the_next_opening_follows_daylight_saving_time() -> None:
    # Oslo moves to summer time on 2026-03-29 at 02:00: 09:00 is 07:00 UTC that day.
    evening = datetime(2026, 3, 28, 20, 30, tzinfo=UTC)
    opens = windows.next_open(time(9), time(20), "Europe/Oslo", evening)
    assert opens == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("destination", "zone"),
    [
        ("+4791234567", "Europe/Oslo"),
        ("+12125550123", "America/New_York"),
        ("+81312345678", "Asia/Tokyo"),
        ("NO.abc123", "Europe/Oslo"),
        ("XX.abc123", "UTC"),  # no country known: the fallback
    ],
)
def test_a_recipient_s_time_zone_comes_from_their_number(destination: str, zone: str) -> None:
    assert windows.zone_of(destination, "UTC") == zone


@BOTH
def test_a_closed_window_holds_the_batches_before_any_request_leaves(
    ctx: SendContext,
    sender: fanout.Fanout,
    simulator: str,
    tmp_path: Path,
    provider: str,
) -> None:
    later = datetime.now(UTC) + timedelta(hours=2)
    window = (
        f"sending_window: {{start: '{later:%H:%M}', end: '{later + timedelta(hours=1):%H:%M}', "
        "time_zone: UTC}\n"
    )
    loaded = load_campaign(write(tmp_path / "c", window, OSLO, provider))
    campaign_id = create_campaign(ctx.db, loaded)
    batch_ids = prepare_campaign(ctx.db, ctx.client, campaign_id, reports_dir=tmp_path / "r")
    outcomes = fanout.send_many(ctx, sender, batch_ids, "task-1")
    assert set(outcomes.values()) == {Outcome.SKIPPED}
    assert httpx.get(f"{simulator}/_simulator/stats").json()["requests"] == 0
    with ctx.db.session() as session:
        assert set(session.scalars(select(Batch.state))) == {"held"}
        opens = {
            b.replace(tzinfo=b.tzinfo or UTC) for b in session.scalars(select(Batch.not_before))
        }
    ahead = opens.pop() - datetime.now(UTC)
    assert not opens and timedelta(hours=1) < ahead <= timedelta(hours=2)
