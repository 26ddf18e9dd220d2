"""Real processes on loopback: the webhook app, the LINK simulator and a worker."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.db import migrate
from dispatcher.interfaces.embedded import worker_command
from tests.conftest import copy_campaign, dispatcher_command, free_port, wait_http

SERVICE_ENV_NAMES = ("DATABASE_URL", "REDIS_URL", "LINK_BASE_URL", "WEBHOOK_TOKEN")
#: The Meta account both sides share (``stack_env``).
META_TOKEN, META_SECRET = "e2e-meta-token", "e2e-app-secret"


@pytest.fixture()
def campaign_dir(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of the example campaign (parametrize indirectly with another one's folder
    name, e.g. ``meta-example``), without reports of earlier runs."""
    name = getattr(request, "param", "example")
    return copy_campaign(name, tmp_path / name)


def run_campaign(
    campaign: Path, env: dict[str, str], *, wait_seconds: int = 120, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``dispatcher run`` on a campaign folder, its output captured."""
    return subprocess.run(
        dispatcher_command("run", str(campaign), "--timeout", str(wait_seconds)),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=wait_seconds + 60,
    )


def clean_env() -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("LINK_", "META_", "SIMULATOR_"))
    }
    for name in SERVICE_ENV_NAMES:
        env.pop(name, None)
    return env


def stack_env(
    database_url: str,
    redis_url: str,
    simulator_url: str,
    folder: Path,
    token: str,
    webhooks_url: str | None = None,
) -> dict[str, str]:
    """The settings of a dispatcher wired to a simulator on loopback: the same LINK and
    Meta accounts on both sides, the gate ``e2e-gate``, Meta's webhooks to
    ``webhooks_url``, reports and drop folder under ``folder``."""
    meta_webhooks = {"SIMULATOR_META_WEBHOOK_URL": f"{webhooks_url}/webhooks/meta"}
    return (
        clean_env()
        | {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "LINK_BASE_URL": simulator_url,
            "LINK_USERNAME": "e2e",
            "LINK_PASSWORD": "e2e-password",
            "LINK_PLATFORM_ID": "E2E",
            "LINK_PLATFORM_PARTNER_ID": "7",
            "LINK_EVENT_REPORT_GATE": "e2e-gate",
            "WEBHOOK_TOKEN": token,
            "REPORTS_DIR": str(folder / "reports"),
            "DROP_DIR": str(folder / "drop"),
            "SIMULATOR_USERNAME": "e2e",
            "SIMULATOR_PASSWORD": "e2e-password",
            "SIMULATOR_PLATFORM_ID": "E2E",
            "SIMULATOR_PLATFORM_PARTNER_ID": "7",
            "META_BASE_URL": simulator_url,
            "META_ACCESS_TOKEN": META_TOKEN,
            "META_APP_SECRET": META_SECRET,
            "META_VERIFY_TOKEN": "e2e-verify",
            "META_WABA_ID": "102290129340398",
            "SIMULATOR_META_ACCESS_TOKEN": META_TOKEN,
            "SIMULATOR_META_APP_SECRET": META_SECRET,
        }
        | (meta_webhooks if webhooks_url else {})
    )


@pytest.fixture()
def stack(
    request: pytest.FixtureRequest, own_pg_url: str, redis_url: str, tmp_path: Path
) -> Iterator[dict[str, str]]:
    """Webhook app, simulator and a worker, as separate processes (parametrize
    indirectly with a dict to add environment variables; ``DATABASE_PASSWORD`` goes
    into the database URL)."""
    extra: dict[str, str] = dict(getattr(request, "param", {}))
    database_url = own_pg_url
    if password := extra.pop("DATABASE_PASSWORD", None):  # trust auth ignores it
        database_url = own_pg_url.replace("postgres@", f"postgres:{password}@", 1)
    migrate(database_url)
    webhook_port, simulator_port = free_port(), free_port()
    token = extra.get("WEBHOOK_TOKEN", "e2e-token")
    env = (
        stack_env(
            database_url,
            redis_url,
            f"http://127.0.0.1:{simulator_port}",
            tmp_path,
            token,
            f"http://127.0.0.1:{webhook_port}",
        )
        | {"DROP_SETTLE_SECONDS": "1", "SIMULATOR_FAILURE_RATE": "0.1", "SIMULATOR_SEED": "42"}
        | extra
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = []

    def start(name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with (logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        return process

    try:
        webhook = start(
            "serve",
            dispatcher_command("serve", "--port", str(webhook_port), "--internal-port", "0"),
        )
        wait_http(f"http://127.0.0.1:{webhook_port}/healthz", process=webhook)
        gate = f"e2e-gate=http://127.0.0.1:{webhook_port}/webhooks/link/dlr?token={token}"
        simulator = start(
            "simulate",
            dispatcher_command("simulate", "--port", str(simulator_port), "--gate", gate),
        )
        wait_http(f"http://127.0.0.1:{simulator_port}/healthz", process=simulator)
        start(
            "worker",
            worker_command(
                tmp_path / "beat-schedule", concurrency=4, hostname="e2e@%h", loglevel="INFO"
            ),
        )
        yield env
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        for log in sorted(logs.iterdir()):
            print(f"----- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def internal_url(logs: Path, timeout_seconds: float = 20) -> str:
    """The internal listener's address (console, REST API), as ``dispatcher serve``
    printed it to ``logs/serve.log``."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        found = re.search(r"(http://[0-9.]+:\d+)/console/", (logs / "serve.log").read_text())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError("dispatcher serve did not print the internal listener's address")


def api_key(env: dict[str, str], name: str, scope: str) -> str:
    """A key made as an administrator makes one: ``dispatcher api-keys create``."""
    done = subprocess.run(
        dispatcher_command("api-keys", "create", name, "--scope", scope, "--quiet"),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    key = done.stdout.strip()
    assert key.startswith("wcd_"), done.stdout
    return key
