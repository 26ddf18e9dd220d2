"""Flower as an operator opens it: a real stack (two workers named per host, beat, the
webhook app, the simulator), ``celery -A workers flower`` with basic auth and the
project's ``flowerconfig.py``, a campaign, and the tasks page in headless Chromium.

Set ``FLOWER_SCREENSHOT`` to a path to keep the mid-run screenshot (the README's
``docs/flower-tasks.png`` is taken so).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dispatcher.db import migrate
from tests.conftest import dispatcher_command, free_port
from tests.e2e.browser import browse
from tests.faults.conftest import FaultStack, RedisServer

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
AUTH = ("ops", "flower-e2e-password")
NAME = "Spring sale 2026"
PEOPLE = 1600  # at 80 messages a second: 20 s of sending
SPEC = f"""\
name: {NAME}
sender: {{source: "+4790000000", level: STANDARD}}
template_category: marketing
message:
  type: template
  template:
    name: hello
    language: en
    components: [{{type: body, parameters: [{{type: text, text: "{{first_name}}"}}]}}]
recipients: people.csv
"""


class FlowerStack(FaultStack):
    """The fault tests' stack with the README's worker names and Flower."""

    def start_worker(self, index: int) -> None:
        self._start(
            f"worker{index}",
            [
                sys.executable, "-m", "celery", "-A", "workers", "worker",
                "-n", f"worker{index + 1}@%h", "-E", "--queues", "prepare,send,dlr",
                "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
            ],
        )  # fmt: skip

    def start_flower(self) -> str:
        port = free_port()
        flower = self._start(
            "flower",
            [
                sys.executable, "-m", "celery", "-A", "workers", "flower",
                f"--conf={ROOT / 'flowerconfig.py'}", "--address=127.0.0.1",
                f"--port={port}", f"--basic-auth={AUTH[0]}:{AUTH[1]}",
                "--persistent=True", f"--db={self.folder / 'flower.db'}",
            ],
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert flower.poll() is None, "flower exited"
            try:
                if httpx.get(f"{url}/api/workers", auth=AUTH, timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "flower did not answer"
            time.sleep(0.2)

    def control(self, command: str, campaign_id: int) -> None:
        done = subprocess.run(
            dispatcher_command(command, str(campaign_id)),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture()
def flower_stack(own_pg_url: str, tmp_path: Path) -> Iterator[FlowerStack]:
    migrate(own_pg_url)
    server = RedisServer(tmp_path)
    server.start()
    stack = FlowerStack(tmp_path, server, own_pg_url)
    try:
        yield stack
    finally:
        stack.stop()
        server.kill()


def progress_row(flower_url: str, campaign_id: int) -> dict[str, Any] | None:
    """What Flower's own search for the campaign finds first, if it is the progress row."""
    found = httpx.get(
        f"{flower_url}/api/tasks",
        params={"search": f"kwargs:campaign_id={campaign_id}", "sort_by": "-received"},
        auth=AUTH,
        timeout=10,
    ).json()
    rows = [task for _, task in found] if isinstance(found, list) else list(found.values())
    for task in rows:
        if task["name"] == "workers.progress.campaign_progress":
            return dict(task)
    return None


COUNTS = re.compile(
    r"(?P<delivered>\d+) delivered, (?P<read>\d+) read, (?P<failed>\d+) failed of "
    r"(?P<people>\d+) · (?P<submitted>\d+) submitted, (?P<sent>\d+) sent"
)


def counts(task: dict[str, Any]) -> dict[str, int]:
    """The counts on a progress row's result (``operations.flower.snapshot``)."""
    found = COUNTS.search(str(ast.literal_eval(task["result"])))
    assert found, task["result"]
    return {key: int(value) for key, value in found.groupdict().items()}


def wait_state(flower_url: str, campaign_id: int, state: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (row := progress_row(flower_url, campaign_id)) is None or row["state"] != state:
        assert time.monotonic() < deadline, f"the row is not {state}: {row}"
        time.sleep(0.3)
    return row


def wait_progress(
    flower_url: str, campaign_id: int, until: Callable[[dict[str, int]], bool]
) -> dict[str, int]:
    """The campaign's row's counts once it is PROGRESS and they satisfy ``until``."""
    deadline = time.monotonic() + 60
    while True:
        row = progress_row(flower_url, campaign_id)
        if row is not None and row["state"] == "PROGRESS" and until(found := counts(row)):
            return found
        assert time.monotonic() < deadline, f"no such PROGRESS row: {row}"
        time.sleep(0.3)


def test_flower_shows_a_running_campaign_as_a_campaign(
    flower_stack: FlowerStack, tmp_path: Path
) -> None:
    stack = flower_stack
    stack.start(workers=2)
    flower = stack.start_flower()
    campaign_id = stack.launch(PEOPLE, SPEC)

    # During the run, as soon as reports arrive: the tasks page as it opens, no click,
    # shows the campaign's name and counts.
    seen = [wait_progress(flower, campaign_id, lambda c: 0 < c["delivered"] < PEOPLE * 3 // 4)]
    page = browse(flower, "/tasks", tmp_path, auth=AUTH)
    dom, shot = page.dom, page.screenshot
    assert shot.stat().st_size > 10_000
    assert NAME in dom, dom[-3000:]
    assert "PROGRESS" in dom
    assert re.search(rf"\d+ delivered, \d+ read, \d+ failed of {PEOPLE}", dom), dom[-3000:]
    if target := os.environ.get("FLOWER_SCREENSHOT"):
        shutil.copy(shot, target)

    # The counts move while it runs.
    seen.append(wait_progress(flower, campaign_id, lambda c: c != seen[0]))
    assert seen[1]["delivered"] >= seen[0]["delivered"] and seen[1]["people"] == PEOPLE

    # Paused, the row says so; resumed, it is PROGRESS again.
    stack.control("pause", campaign_id)
    paused = wait_state(flower, campaign_id, "PAUSED")
    assert str(ast.literal_eval(paused["result"])).startswith("paused · ")
    stack.control("resume", campaign_id)
    wait_state(flower, campaign_id, "PROGRESS")

    # The two workers of one host are told apart by their names.
    tasks = httpx.get(f"{flower}/api/tasks", auth=AUTH, timeout=10).json()
    workers = {task["worker"].split("@")[0] for task in tasks.values() if task["worker"]}
    assert workers == {"worker1", "worker2"}

    # At the end: the same row, SUCCESS, with the final summary.
    deadline = time.monotonic() + 90
    while True:
        row = progress_row(flower, campaign_id)
        if row is not None and row["state"] == "SUCCESS":
            final = counts(row)
            if final["delivered"] == PEOPLE:
                break
        assert time.monotonic() < deadline, f"no final summary: {row}"
        time.sleep(0.5)
    assert final["people"] == PEOPLE
    assert final["submitted"] == final["sent"] == PEOPLE and final["failed"] == 0

    # The README's filters: all campaigns' work without the housekeeping; one row each.
    def names(search: str) -> set[str]:
        found = httpx.get(
            f"{flower}/api/tasks", params={"search": search}, auth=AUTH, timeout=10
        ).json()
        return {(task["name"] or "").rsplit(".", 1)[-1] for task in found.values()}

    campaign_work = names("campaign_id")
    assert {"campaign_progress", "send_batches"} <= campaign_work
    assert not campaign_work & {"sweep_reports", "start_due", "scan_drop_folder", "resend_due"}
    assert names("") >= {"sweep_reports", "start_due", "scan_drop_folder", "resend_due"}
    assert names("name:progress") == {"campaign_progress"}
