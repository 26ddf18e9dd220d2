"""The embedded default serves the console and the REST API: ``dispatcher run --open``
prints a login link, keeps the stack up after the campaign, and stops on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import dispatcher_command
from tests.e2e.conftest import clean_env

pytestmark = [pytest.mark.e2e]

LOGIN = re.compile(r"(http://127\.0\.0\.1:\d+)/console/login#key=(wcd_[\w-]+)")


def test_run_open_serves_the_console_until_ctrl_c(example_dir: Path, tmp_path: Path) -> None:
    env = clean_env() | {
        "DISPATCHER_STATE_DIR": str(tmp_path / "state"),
        "BROWSER": "true",  # webbrowser.open runs `true`: no window in a test
        "COLUMNS": "300",
    }
    for name in ("REDIS_URL", "DATABASE_URL", "LINK_BASE_URL", "META_BASE_URL"):
        env.pop(name, None)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            dispatcher_command("run", str(example_dir), "--open"),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "The console stays up" not in log.read_text(errors="replace"):
            assert process.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.5)
        found = LOGIN.search(log.read_text(errors="replace"))
        assert found, log.read_text(errors="replace")
        base, key = found.groups()
        with httpx.Client(base_url=base, timeout=10) as http:
            assert http.get("/api/campaigns").status_code == 401
            listed = http.get("/api/campaigns", headers={"Authorization": f"Bearer {key}"})
            assert listed.status_code == 200, listed.text
            body = listed.json()
            campaigns = body["campaigns"] if isinstance(body, dict) else body
            assert [c["state"] for c in campaigns] == ["completed"]
            assert http.get("/console/login").status_code == 200
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(30) == 0, log.read_text(errors="replace")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
