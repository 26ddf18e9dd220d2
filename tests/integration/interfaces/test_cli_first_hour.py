"""What a new user meets in the CLI after the first run: status at 80 columns, previews
apart and deletable, the sender masked, a repeated campaign refused, from a real SQLite
state folder (and PostgreSQL + Redis for the production refusal)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from dispatcher.db import Campaign, Database, Message, migrate
from dispatcher.interfaces.cli import app
from dispatcher.interfaces.terminal import ExitCode
from dispatcher.settings import get_settings
from tests.conftest import dispatcher_command

runner = CliRunner()


@pytest.fixture()
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    for name in ("DATABASE_URL", "REDIS_URL", "LINK_BASE_URL", "REPORTS_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DISPATCHER_STATE_DIR", str(tmp_path / "state"))
    get_settings.cache_clear()
    yield tmp_path / "state"
    get_settings.cache_clear()


def preview(folder: Path) -> str:
    stored = runner.invoke(app, ["run", str(folder), "--dry-run"], env={"COLUMNS": "80"})
    assert stored.exit_code == 0, stored.output
    return stored.output


def as_sending(state: Path, submitted: int) -> int:
    """The stored preview, as if sending with ``submitted`` people out just now."""
    db = Database(f"sqlite:///{state / 'dispatcher.db'}")
    with db.session() as session:
        campaign_id = int(session.scalar(select(Campaign.id).order_by(Campaign.id.desc())) or 0)
        session.execute(
            update(Campaign)
            .where(Campaign.id == campaign_id)
            .values(state="sending", rate_per_second=80, level="STANDARD")
        )
        first = list(session.scalars(select(Message.id).order_by(Message.id).limit(submitted)))
        session.execute(
            update(Message)
            .where(Message.id.in_(first))
            .values(status="submitted", submitted_at=datetime.now(UTC))
        )
    db.dispose()
    return campaign_id


def test_a_dry_run_says_its_mode_and_how_to_remove_the_preview(
    state: Path, example_dir: Path
) -> None:
    shown = preview(example_dir)
    assert "Mode: dry run" in shown
    assert "dispatcher delete 1" in shown


def test_status_fits_80_columns_with_every_figure_whole(state: Path, example_dir: Path) -> None:
    preview(example_dir)
    as_sending(state, 40)
    listed = runner.invoke(app, ["status"], env={"COLUMNS": "80"})
    assert listed.exit_code == 0, listed.output
    assert max(len(line) for line in listed.output.splitlines()) <= 80
    line = next(row for row in listed.output.splitlines() if "sending" in row)
    assert "…" not in line.split("sending", 1)[1]  # only a long name may be cut
    for figure in ("40/190", "4/80", "0m38s"):
        assert figure in line


def test_previews_are_listed_apart_and_can_be_deleted(
    state: Path, example_dir: Path, tmp_path: Path
) -> None:
    preview(example_dir)
    second = example_dir.parent / "second"
    shutil.copytree(example_dir, second, ignore=shutil.ignore_patterns("reports"))
    preview(second)  # the same files: a preview notes the repeat, it is not refused
    as_sending(state, 40)  # campaign 2 now sends; campaign 1 stays a preview
    listed = runner.invoke(app, ["status"], env={"COLUMNS": "80"}).output
    campaigns, previews = listed.split("Previews")
    assert "sending" in campaigns and "previewed" not in campaigns
    assert "Spring sale 2026" in previews

    rejects = example_dir / "reports" / "campaign-1"
    assert (rejects / "rejects.csv").is_file()
    deleted = runner.invoke(app, ["delete", "1"])
    assert deleted.exit_code == 0, deleted.output
    assert "Campaign 1 deleted" in deleted.output
    assert not rejects.exists()
    assert "Previews" not in runner.invoke(app, ["status"], env={"COLUMNS": "80"}).output

    refused = runner.invoke(app, ["delete", "2"])
    assert refused.exit_code == ExitCode.REFUSED
    assert "campaign 2 is sending" in refused.output


def test_status_json_masks_the_sender_while_the_report_keeps_numbers_whole(
    state: Path, example_dir: Path
) -> None:
    preview(example_dir)
    [shown] = json.loads(runner.invoke(app, ["status", "--json"]).output)
    assert shown["source"] == "+479•••••00"
    report = runner.invoke(app, ["report", "1"]).output
    assert "+46732601815" in report  # the export, for the operator


def production_env(pg_url: str, redis_url: str, folder: Path) -> dict[str, str]:
    from tests.e2e.conftest import clean_env

    return clean_env() | {
        "DATABASE_URL": pg_url,
        "REDIS_URL": redis_url,
        "LINK_BASE_URL": "http://127.0.0.1:9",  # not a simulator: nothing answers
        "LINK_USERNAME": "u",
        "LINK_PASSWORD": "p",
        "LINK_PLATFORM_ID": "P",
        "LINK_PLATFORM_PARTNER_ID": "1",
        "LINK_EVENT_REPORT_GATE": "g",
        "REPORTS_DIR": str(folder / "reports"),
    }


def test_sending_the_same_folder_again_is_refused_unless_again_is_given(
    own_pg_url: str, redis_url: str, example_dir: Path, tmp_path: Path
) -> None:
    env = production_env(own_pg_url, redis_url, tmp_path)

    def run(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dispatcher_command("run", str(example_dir), "--detach", *extra),
            env=env | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert "Campaign 1 queued" in first.stdout
    repeated = run()
    assert repeated.returncode == ExitCode.REFUSED, repeated.stdout + repeated.stderr
    assert "campaign 1 of" in repeated.stdout and "--again" in repeated.stdout
    assert "Traceback" not in repeated.stdout + repeated.stderr
    meant = run("--again")
    assert meant.returncode == 0, meant.stdout + meant.stderr
    assert "Campaign 2 queued" in meant.stdout
    migrate(own_pg_url)
    db = Database(own_pg_url)
    with db.session() as session:
        assert list(session.scalars(select(Campaign.id).order_by(Campaign.id))) == [1, 2]
    db.dispose()


def test_a_campaign_the_broker_cannot_take_is_cancelled_and_may_be_run_again(
    own_pg_url: str, example_dir: Path, tmp_path: Path
) -> None:
    env = production_env(own_pg_url, "redis://127.0.0.1:1/0", tmp_path)  # nothing listens

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            dispatcher_command("run", str(example_dir), "--detach"),
            env=env | {"COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    for attempt in (1, 2):  # the second is not refused as a repeat: nothing was sent
        refused = run()
        assert refused.returncode == ExitCode.REFUSED, refused.stdout + refused.stderr
        assert f"campaign {attempt} could not be queued" in refused.stdout
        assert "Traceback" not in refused.stdout + refused.stderr
    db = Database(own_pg_url)
    with db.session() as session:
        assert list(session.scalars(select(Campaign.state).order_by(Campaign.id))) == [
            "cancelled",
            "cancelled",
        ]
    db.dispose()
