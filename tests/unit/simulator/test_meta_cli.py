"""``dispatcher simulate --provider meta`` prints what a dispatcher needs, and those settings
work against the simulator it starts."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def simulate(
    *arguments: str, lines: int = 0
) -> Iterator[tuple[subprocess.Popen[str], dict[str, str]]]:
    """``dispatcher simulate`` in a child process, and the first ``lines`` KEY=value lines
    it printed."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SIMULATOR_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "dispatcher.interfaces.cli", "simulate", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**env, "COLUMNS": "200"},
    )
    try:
        assert process.stdout is not None
        printed: dict[str, str] = {}
        deadline = time.monotonic() + 20
        while len(printed) < lines and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            found = re.fullmatch(r"([A-Z_]+)=(\S+)\n", line)
            if found:
                printed[found[1]] = found[2]
        yield process, printed
    finally:
        process.terminate()
        process.wait(timeout=15)
        if process.stdout is not None:
            process.stdout.close()


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)
    raise AssertionError("the simulator did not come up")


def test_simulate_for_meta_prints_settings_that_send_through_it() -> None:
    port = free_port()
    with simulate("--provider", "meta", "--port", str(port), lines=4) as (_, printed):
        assert printed["META_BASE_URL"] == f"http://127.0.0.1:{port}"
        assert set(printed) == {"META_BASE_URL", "META_ACCESS_TOKEN", "META_APP_SECRET",
                                "META_WABA_ID"}  # fmt: skip
        wait_healthy(printed["META_BASE_URL"])
        headers = {"Authorization": f"Bearer {printed['META_ACCESS_TOKEN']}"}
        templates = httpx.get(
            f"{printed['META_BASE_URL']}/v23.0/{printed['META_WABA_ID']}/message_templates",
            headers=headers,
        )
    assert templates.status_code == 200 and templates.json()["data"]


def test_simulate_prints_link_settings_by_default() -> None:
    port = free_port()
    with simulate("--port", str(port), lines=3) as (_, printed):
        pass
    assert printed["LINK_BASE_URL"] == f"http://127.0.0.1:{port}"
    assert (printed["LINK_USERNAME"], printed["LINK_PASSWORD"]) == ("demo", "demo")


@pytest.mark.parametrize("arguments", [("--provider", "sms"), ("--meta-webhook", "ftp://x")])
def test_simulate_refuses_a_wrong_option(arguments: tuple[str, ...]) -> None:
    with simulate(*arguments) as (process, _):
        assert process.wait(timeout=20) != 0
