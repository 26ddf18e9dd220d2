"""``dispatcher status``: the overview with bars, rate against the limit and ETA, and
the JSON for scripts, from a real (SQLite) state folder."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from dispatcher.db import Campaign, Database, Message, Reply
from dispatcher.interfaces.cli import app
from dispatcher.settings import get_settings
from tests.conftest import copy_campaign

runner = CliRunner()


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("DATABASE_URL", "REDIS_URL", "LINK_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPATCHER_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def test_status_shows_progress_rate_and_eta_and_json_for_scripts(
    state: Path, tmp_path: Path
) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    stored = runner.invoke(app, ["run", str(folder), "--dry-run"])
    assert stored.exit_code == 0, stored.output
    db = Database(f"sqlite:///{state / 'dispatcher.db'}")
    with db.session() as session:  # as if 40 of its 190 people went out just now
        campaign_id = session.scalar(select(Campaign.id))
        session.execute(
            update(Campaign).values(state="sending", rate_per_second=80, level="STANDARD")
        )
        first = list(session.scalars(select(Message.id).order_by(Message.id).limit(40)))
        session.execute(
            update(Message)
            .where(Message.id.in_(first))
            .values(status="submitted", submitted_at=datetime.now(UTC))
        )
    db.dispose()

    listed = runner.invoke(app, ["status"], env={"COLUMNS": "200"})
    assert listed.exit_code == 0, listed.output
    line = next(row for row in listed.output.splitlines() if "Spring sale" in row)
    assert "sending" in line and "40/190" in line
    assert "4/80" in line  # 40 in the last 10 s, against the level
    assert "0m38s" in line  # 150 waiting at 4 msg/s

    as_json = runner.invoke(app, ["status", "--json"])
    [shown] = json.loads(as_json.output)
    assert shown["campaign_id"] == campaign_id and shown["submitted"] == 40
    assert shown["send_rate"] == pytest.approx(4.0)
    assert shown["eta_seconds"] == pytest.approx(150 / 4.0)


def test_status_of_a_campaign_shows_billable_messages_by_category_and_replies_by_button(
    state: Path, tmp_path: Path
) -> None:
    folder = copy_campaign("example", tmp_path / "example")
    stored = runner.invoke(app, ["run", str(folder), "--dry-run"])
    assert stored.exit_code == 0, stored.output
    db = Database(f"sqlite:///{state / 'dispatcher.db'}")
    with db.session() as session:  # as the status reports and two replies left it
        campaign_id = session.scalar(select(Campaign.id))
        session.execute(update(Campaign).values(state="completed"))
        ids = list(session.scalars(select(Message.id).order_by(Message.id)))
        priced = {"status": "delivered", "pricing_model": "PMP", "pricing_type": "regular"}
        session.execute(
            update(Message)
            .where(Message.id.in_(ids[:5]))
            .values(**priced, pricing_category="marketing", pricing_billable=True)
        )
        session.execute(
            update(Message)
            .where(Message.id == ids[5])
            .values(**priced, pricing_category="service", pricing_billable=False)
        )
        for n, (button, label) in enumerate([("YES", "Yes please"), ("YES", "Yes please")]):
            session.add(Reply(campaign_id=campaign_id, message_id=ids[n], incoming_id=f"mo{n}",
                              kind="button", button=button, label=label,
                              received_at=datetime.now(UTC)))  # fmt: skip
    db.dispose()

    shown = runner.invoke(app, ["status", str(campaign_id)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    lines = {" ".join(line.strip("│ ").split()) for line in shown.output.splitlines()}
    assert "billable: marketing │ 5 │ WhatsApp pricing category" in lines
    assert "not billable: service │ 1 │ WhatsApp pricing category" in lines
    assert "replies │ 2 │ from 2 people" in lines
    assert "chose Yes please [YES] │ 2 │ button or list reply" in lines

    as_json = runner.invoke(app, ["status", str(campaign_id), "--json"])
    [data] = json.loads(as_json.output)
    assert (data["billable"], data["not_billable"]) == ({"marketing": 5}, {"service": 1})
    assert (data["replies"], data["reply_buttons"]) == (2, {"Yes please [YES]": 2})
