"""Shared fixtures: real PostgreSQL and Redis on loopback, one throwaway database each run.

Nothing that needs a service skips: if PostgreSQL or Redis is down, the tests fail
and say which one (`.ci/run` starts them first).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
#: Inputs each fuzz test tried, and the verdict line of each fault run: printed at the
#: end of the run, so every CI log carries the figures.
FUZZ_CASES: Counter[str] = Counter()
FAULT_RUNS: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FUZZ_CASES:
        terminalreporter.section("fuzzing")
        for name, count in sorted(FUZZ_CASES.items()):
            terminalreporter.write_line(f"{name}: {count} cases tried")
    if FAULT_RUNS:
        terminalreporter.section("fault runs")
        for line in FAULT_RUNS:
            terminalreporter.write_line(line)


@contextlib.contextmanager
def _throwaway_database() -> Iterator[str]:
    name = f"dispatcher_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - environment problem, made loud
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is not usable: {exc}")
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture()
def own_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (for whole stacks of processes)."""
    with _throwaway_database() as url:
        yield url


@pytest.fixture()
def redis_url() -> Iterator[str]:
    """The test Redis database, emptied before and after each test."""
    client = redis.Redis.from_url(REDIS_TEST_URL)
    try:
        client.flushdb()
    except redis.ConnectionError as exc:  # pragma: no cover - environment problem
        pytest.fail(f"Redis at {REDIS_TEST_URL} is not reachable: {exc}")
    yield REDIS_TEST_URL
    client.flushdb()
    client.close()


#: How a spec written ``sender: {...}`` names the simulator's Meta number (the same
#: number as LINK's ``+4790000000``).
META_SENDER = 'provider: meta, phone_number_id: "106540352242922", '
#: Behaviour both providers share, tested for each (with the ``provider`` fixture).
BOTH = pytest.mark.parametrize("provider", ["link", "meta"])


@pytest.fixture()
def provider() -> str:
    """The provider a test's campaigns send through; a test marked ``BOTH`` runs for
    each."""
    return "link"


def through(provider: str, spec: str) -> str:
    """A spec whose sender is written ``sender: {...}``, sent through ``provider``."""
    if provider == "link":
        return spec
    return spec.replace("sender: {", "sender: {" + META_SENDER, 1)


def copy_campaign(name: str, target: Path) -> Path:
    """A copy of ``campaigns/<name>`` at ``target``, without reports of earlier runs."""
    shutil.copytree(ROOT / "campaigns" / name, target, ignore=shutil.ignore_patterns("reports"))
    return target


@pytest.fixture()
def example_dir(tmp_path: Path) -> Path:
    """A copy of the example campaign to change or run, at ``tmp_path / "example"``."""
    return copy_campaign("example", tmp_path / "example")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(
    url: str, timeout_seconds: float = 20.0, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Poll ``url`` until it answers 200 (or fail, showing why)."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not come up within {timeout_seconds}s")


def dispatcher_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dispatcher.interfaces.cli", *args]
