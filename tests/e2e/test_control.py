"""Pause, resume and cancel across a real worker process, judged by the simulator's
own receipt log: when requests arrived, and who was sent how often."""

from __future__ import annotations

import csv
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import dispatcher_command
from tests.integration.conftest import PERSONAL_SPEC as SPEC

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

PEOPLE = 600
#: The issue's promise: a command takes effect across all workers within this.
TAKES_EFFECT_SECONDS = 2.0


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        dispatcher_command(*args), env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def receipts(env: dict[str, str]) -> list[float]:
    answer = httpx.get(f"{env['LINK_BASE_URL']}/_simulator/receipts", timeout=10)
    return sorted(at for at, _ in answer.json())


def wait_for(env: dict[str, str], count: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while len(receipts(env)) < count:
        assert time.monotonic() < deadline, f"fewer than {count} requests arrived"
        time.sleep(0.2)


def quiet_after(env: dict[str, str], moment: float) -> list[float]:
    """Requests that arrived more than TAKES_EFFECT_SECONDS after ``moment``, having
    waited long enough to see any."""
    time.sleep(TAKES_EFFECT_SECONDS + 2.5)
    return [at for at in receipts(env) if at > moment + TAKES_EFFECT_SECONDS]


@pytest.mark.parametrize("stack", [{"SIMULATOR_RECORD_REQUESTS": "1"}], indirect=True)
def test_pause_resume_and_cancel_take_effect_across_workers_and_nobody_is_sent_twice(
    stack: dict[str, str], tmp_path: Path
) -> None:
    folder = tmp_path / "control"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(SPEC)
    rows = "\n".join(f"+479{n:07d},P{n}" for n in range(1000001, 1000001 + PEOPLE))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    queued = cli(stack, "run", str(folder), "--detach")
    campaign_id = re.search(r"Campaign (\d+) queued", queued)
    assert campaign_id, queued
    cid = campaign_id.group(1)

    wait_for(stack, 80)
    cli(stack, "pause", cid)
    paused_at = time.time()
    assert quiet_after(stack, paused_at) == [], "requests kept arriving after the pause"
    assert '"state": "paused"' in cli(stack, "status", cid, "--json")
    at_pause = len(receipts(stack))
    assert at_pause < PEOPLE

    cli(stack, "resume", cid)
    wait_for(stack, at_pause + 80)
    cli(stack, "cancel", cid)
    cancelled_at = time.time()
    assert quiet_after(stack, cancelled_at) == [], "requests kept arriving after cancel"

    stats = httpx.get(f"{stack['LINK_BASE_URL']}/_simulator/stats", timeout=10).json()
    sent = stats["destinations"]
    assert set(sent.values()) == {1}, "somebody was sent twice"
    assert at_pause < len(sent) < PEOPLE

    report = list(csv.DictReader(cli(stack, "report", cid).splitlines()))
    assert len(report) == PEOPLE
    never = {row["destination"] for row in report if row["status"] == "cancelled"}
    # Everyone is either at the simulator exactly once, or reported never sent.
    assert len(never) == PEOPLE - len(sent)
    assert never.isdisjoint(sent)
    assert '"state": "cancelled"' in cli(stack, "status", cid, "--json")
    with pytest.raises(AssertionError, match="is cancelled"):
        cli(stack, "resume", cid)
