"""The example campaign end to end, through real processes on loopback.

A Celery worker subprocess, the webhook app (`dispatcher serve`) and the LINK
simulator (`dispatcher simulate`) run against the local PostgreSQL and Redis;
`dispatcher run` hands the campaign to them and follows it to its last report.
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, func, select

from dispatcher.db import Campaign, Database, Message
from dispatcher.interfaces.terminal import ExitCode
from dispatcher.operations import task_cpu
from dispatcher.operations.progress import progress
from dispatcher.status import SETTLED
from tests.conftest import dispatcher_command
from tests.e2e.conftest import clean_env, run_campaign

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


@pytest.mark.parametrize("campaign_dir", ["example", "meta-example"], indirect=True)
def test_the_example_campaign_reaches_everyone_once_through_separate_workers(
    stack: dict[str, str], campaign_dir: Path, tmp_path: Path
) -> None:
    """LINK's example and the same campaign through Meta's Cloud API (one person a
    request, signed status webhooks)."""
    run = run_campaign(campaign_dir, stack)
    # The simulator fails ~10 % (see below): some people were not sent.
    assert run.returncode == ExitCode.SOME_FAILED, run.stdout + run.stderr
    assert "Mode: production" in run.stdout

    pg_url = stack["DATABASE_URL"]
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        campaign = connection.execute(select(Campaign)).one()
        statuses = dict(
            connection.execute(select(Message.status, func.count()).group_by(Message.status)).all()
        )
        destinations = connection.execute(select(Message.destination)).scalars().all()
    engine.dispose()
    assert (campaign.loaded, campaign.rejected, campaign.duplicates) == (200, 5, 5)
    # Every valid person reached a settled status; retryable failures wait for their
    # resend (15 minutes at the earliest), which keeps the campaign 'sending'.
    assert sum(statuses.values()) == 190
    assert set(statuses) <= SETTLED
    assert statuses.get("failed", 0) > 0  # the simulator failed ~10 % as configured
    database = Database(pg_url)
    with database.session() as session:
        final = progress(session, campaign.id)
    database.dispose()
    assert final is not None
    assert final.unsettled == final.awaiting_resend
    assert campaign.state == ("sending" if final.awaiting_resend else "completed")

    stats = httpx.get(f"{stack['LINK_BASE_URL']}/_simulator/stats", timeout=5).json()
    # The simulator received each person exactly once...
    assert sorted(stats["destinations"]) == sorted(destinations)
    assert set(stats["destinations"].values()) == {1}
    assert set(stats["users"].values()) == {1}
    # ...the image was uploaded exactly once, and nobody went over the level.
    assert stats["media_uploads"] == 1
    assert max(stats["max_per_second"].values()) <= 80
    assert stats["callbacks"]["pending"] == 0
    # The worker counted its CPU by task: one preparation, the send tasks apart.
    with redis.Redis.from_url(stack["REDIS_URL"]) as client:
        spent = task_cpu.totals(client)
    assert spent["prepare_campaign"][1] == 1 and spent["prepare_campaign"][0] > 0
    assert spent["send_batches"][1] >= 1 and spent["send_batches"][0] > 0

    report = subprocess.run(
        dispatcher_command("report", str(campaign.id)),
        env=stack,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    outcomes = list(csv.DictReader(report.stdout.splitlines()))
    assert len(outcomes) == 195  # every line but the 5 rejected: 190 people, 5 merged
    merged = [o for o in outcomes if o["status"] == "merged"]
    assert len(merged) == 5
    assert all(o["result_description"].startswith("merged into line ") for o in merged)
    failures = [o for o in outcomes if o["status"] == "failed"]
    # LINK's code, or (Meta's statuses carry none of LINK's) WhatsApp's, and its words.
    assert failures and all(
        (o["result_code"] or o["whatsapp_error_code"]) and o["result_description"] for o in failures
    )

    rejects_path = tmp_path / "reports" / f"campaign-{campaign.id}" / "rejects.csv"
    with rejects_path.open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["line"], r["reason"]) for r in rejects] == [
        ("14", "invalid phone number"),
        ("79", "invalid phone number"),
        ("122", "invalid phone number"),
        ("162", "empty: no phone number or BSUID"),
        ("187", "invalid phone number"),
    ]


def test_the_first_readme_command_gives_the_same_summary_every_time_it_is_run(
    campaign_dir: Path, tmp_path: Path
) -> None:
    """Three runs in one state folder: the media id cached by the first run died with
    its simulator, so each run uploads afresh and everyone is reached; runs two and
    three say they repeat an earlier campaign; the folder it ran in stays clean."""
    env = clean_env() | {"DISPATCHER_STATE_DIR": str(tmp_path / "state")}
    for attempt in range(3):
        run = run_campaign(campaign_dir, env, wait_seconds=60, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Mode: embedded" in run.stdout
        assert "(completed)" in run.stdout
        for label, count in (
            ("loaded", 200),
            ("rejected", 5),
            ("duplicates removed", 5),
            ("read", 190),
        ):
            assert any(
                line.split("│")[1].strip() == label and line.split("│")[2].strip() == str(count)
                for line in run.stdout.splitlines()
                if line.count("│") >= 3
            ), f"run {attempt + 1}: {label} {count} not in the summary:\n{run.stdout}"
        assert "failed" not in {
            line.split("│")[1].strip()
            for line in run.stdout.splitlines()
            if line.count("│") >= 3 and line.split("│")[2].strip() not in ("", "0")
        }, run.stdout
        repeats = "Note: repeats campaign 1 of" if attempt == 1 else "Note: repeats campaign"
        assert (repeats in run.stdout) is (attempt > 0), run.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["example", "state"]


def test_the_embedded_run_delivers_its_alerts_before_it_exits(
    campaign_dir: Path, tmp_path: Path
) -> None:
    """The embedded stack stops with the run: the started and completed alerts reach
    ALERT_URL before `dispatcher run` returns, signed, once each."""
    from dispatcher.operations.alerts import verify
    from tests.integration.guardrails.alert_receivers import receiving

    with receiving() as receiver:
        env = clean_env() | {
            "DISPATCHER_STATE_DIR": str(tmp_path / "state"),
            "ALERT_URL": receiver.url,
            "ALERT_SECRET": "alert-secret",
        }
        run = run_campaign(campaign_dir, env, wait_seconds=60, cwd=tmp_path)
        assert run.returncode == 0, run.stdout + run.stderr
        keys = receiver.keys()
        bodies = list(receiver.received)
    assert sorted(keys) == ["completed:1", "started:1"]
    for got in bodies:
        assert verify("alert-secret", got.headers["X-Dispatcher-Signature"], got.raw)
    completed = next(b.body for b in bodies if b.body["event"] == "completed")
    assert completed["text"].startswith("Campaign 1 (")
