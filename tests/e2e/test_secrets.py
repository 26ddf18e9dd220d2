"""Secrets and phone numbers stay where they belong, through a real campaign run.

The LINK password, the webhook token and the database password are set to values no
one would write by chance; then every log line of the worker and the webhook app, the
CLI's output, the reports, and every message the broker carried (what Flower shows) is
searched for them and for the recipients' numbers.
"""

from __future__ import annotations

import base64
import csv
import json
import subprocess
import threading
from pathlib import Path

import pytest
import redis

from dispatcher.interfaces.terminal import ExitCode
from tests.conftest import dispatcher_command
from tests.e2e.conftest import run_campaign

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

LINK_PASSWORD = "link-pw-7Q2vX9"
WEBHOOK_TOKEN = "hook-token-3Kp8Zr"
DATABASE_PASSWORD = "db-pw-5Mn4Ty"
SECRETS = (LINK_PASSWORD, WEBHOOK_TOKEN, DATABASE_PASSWORD)
SECRET_ENV = {
    "LINK_PASSWORD": LINK_PASSWORD,
    "SIMULATOR_PASSWORD": LINK_PASSWORD,
    "WEBHOOK_TOKEN": WEBHOOK_TOKEN,
    "DATABASE_PASSWORD": DATABASE_PASSWORD,
    "PYTHONUNBUFFERED": "1",
}


class BrokerTap:
    """Every command Redis receives (MONITOR) while the campaign runs."""

    def __init__(self, url: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._monitor = self._client.monitor()
        self._monitor.__enter__()
        self.commands: list[str] = []
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        try:
            for event in self._monitor.listen():
                self.commands.append(str(event.get("command", "")))
        except (redis.ConnectionError, ValueError, AttributeError):
            return  # closed by stop()

    def stop(self) -> list[str]:
        self._monitor.connection.disconnect()
        self._thread.join(timeout=5)
        self._client.close()
        return self.commands


def task_messages(commands: list[str]) -> list[str]:
    """The Celery messages pushed to the broker, bodies decoded (headers hold
    ``argsrepr``/``kwargsrepr``, the body the arguments themselves)."""
    found = []
    for command in commands:
        start = command.find("{")
        if not command.startswith("LPUSH") or start < 0:
            continue
        raw = command[start:].rsplit("}", 1)[0] + "}"
        message = json.loads(raw.encode().decode("unicode_escape"))  # all must parse
        body = base64.b64decode(message["body"]).decode()
        found.append(json.dumps(message.get("headers", {})) + body)
    return found


@pytest.mark.parametrize("stack", [SECRET_ENV], indirect=True)
def test_no_secret_or_number_in_logs_output_reports_or_task_messages(
    stack: dict[str, str], campaign_dir: Path, tmp_path: Path
) -> None:
    tap = BrokerTap(stack["REDIS_URL"])
    try:
        run = run_campaign(campaign_dir, stack)
        # SIMULATOR_FAILURE_RATE fails some people: exit code 3 (some not sent).
        assert run.returncode == ExitCode.SOME_FAILED, run.stdout + run.stderr
        report = subprocess.run(
            dispatcher_command("report", "1"), env=stack, capture_output=True, text=True
        )
        assert report.returncode == 0, report.stderr
    finally:
        commands = tap.stop()
    lines = csv.DictReader(report.stdout.splitlines())
    people = {row["destination"] for row in lines if row["status"] != "merged"}
    assert len(people) >= 190  # phone numbers and BSUIDs; the duplicates merged

    messages = task_messages(commands)
    assert any("send_batches" in message for message in messages), "no task message seen"
    logs = {
        log.name: log.read_text(errors="replace")
        for log in (tmp_path / "logs").iterdir()
        if log.name != "simulate.log"  # LINK's side of the wire, not ours
    }
    assert "HTTP Request: POST" in logs["worker.log"], "the worker logged at INFO"
    places = {
        **logs,
        "run output": run.stdout + run.stderr,
        "report": report.stdout,
        **{str(p): p.read_text(errors="replace") for p in (tmp_path / "reports").rglob("*.*")},
        **{f"task message {i}": message for i, message in enumerate(messages)},
    }
    for place, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret in {place}"
        if place not in ("report",) and not place.startswith(str(tmp_path / "reports")):
            # With or without the +: a number is as readable either way.
            leaked = [number for number in people if number.lstrip("+") in text]
            assert leaked == [], f"recipient numbers in {place}: {leaked[:3]}"
