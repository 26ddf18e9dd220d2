"""A campaign folder dropped into the inbox is sent by the worker's own schedule (beat)
and filed under done/; a broken one lands in failed/ with a readable error."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def wait_until(check: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.5)


def test_dropped_campaigns_are_sent_or_refused_and_filed(stack: dict[str, str]) -> None:
    drop = Path(stack["DROP_DIR"])
    inbox = drop / "inbox"
    inbox.mkdir(parents=True)
    ignore = shutil.ignore_patterns("reports")
    broken = inbox / "broken"
    shutil.copytree(ROOT / "campaigns" / "example", broken, ignore=ignore)
    spec = broken / "campaign.yaml"
    spec.write_text(
        spec.read_text().replace("template_category: marketing", "template_category: spam")
    )
    # Written elsewhere, then moved in whole: how a careful writer drops a folder.
    staging = drop / "staging"
    shutil.copytree(ROOT / "campaigns" / "example", staging / "spring", ignore=ignore)
    (staging / "spring" / "READY").touch()
    (staging / "spring").rename(inbox / "spring")

    wait_until(lambda: (drop / "failed" / "broken" / "ERROR.txt").exists())
    error = (drop / "failed" / "broken" / "ERROR.txt").read_text()
    assert "template_category" in error and "Traceback" not in error

    wait_until(lambda: (drop / "done" / "spring").is_dir())
    assert not (drop / "processing" / "spring").exists()
    stats_url = f"{stack['LINK_BASE_URL']}/_simulator/stats"
    wait_until(lambda: len(httpx.get(stats_url, timeout=5).json()["destinations"]) == 190)
    stats = httpx.get(stats_url, timeout=5).json()
    assert set(stats["destinations"].values()) == {1}
    assert list(inbox.iterdir()) == []
