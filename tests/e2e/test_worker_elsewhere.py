"""A worker on another host: it never sees the folder the campaign was registered from."""

from __future__ import annotations

import csv
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, func, select

from dispatcher.db import Campaign, Message
from dispatcher.status import MessageStatus
from tests.conftest import dispatcher_command


def test_a_worker_that_cannot_see_the_campaign_folder_prepares_and_sends_it(
    stack: dict[str, str], campaign_dir: Path, tmp_path: Path
) -> None:
    spec = campaign_dir / "campaign.yaml"
    due = datetime.now(UTC) + timedelta(seconds=6)
    spec.write_text(spec.read_text() + f'send_at: "{due.isoformat()}"\n')
    queued = subprocess.run(
        dispatcher_command("run", str(campaign_dir), "--detach"),
        env=stack,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert queued.returncode == 0, queued.stdout + queued.stderr
    shutil.rmtree(campaign_dir)  # gone before beat hands it to the worker

    engine = create_engine(stack["DATABASE_URL"])
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as connection:
            campaign = connection.execute(select(Campaign)).one()
            left = connection.scalar(
                select(func.count()).where(Message.status == MessageStatus.QUEUED)
            )
            messages = connection.scalar(select(func.count()).select_from(Message))
        if campaign.prepared_at is not None and messages and not left:
            break
        assert campaign.state != "failed", campaign.error
        assert time.monotonic() < deadline, (campaign.state, messages, left)
        time.sleep(0.5)
    engine.dispose()
    assert (campaign.loaded, campaign.rejected, campaign.duplicates) == (200, 5, 5)
    stats = httpx.get(f"{stack['LINK_BASE_URL']}/_simulator/stats", timeout=5).json()
    assert len(stats["destinations"]) == 190 and set(stats["destinations"].values()) == {1}
    assert stats["media_uploads"] == 1  # the banner, read from storage

    shutil.rmtree(tmp_path / "reports")  # the preparing worker's own copy, too
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    fetched = subprocess.run(
        dispatcher_command("rejects", str(campaign.id), "-o", "rejects.csv"),
        env=stack,
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    with (elsewhere / "rejects.csv").open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [r["line"] for r in rejects] == ["14", "79", "122", "162", "187"]
