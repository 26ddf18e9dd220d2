"""Flower as deployed: the project's columns, persistent history, workers named per host."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def services() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return dict(loaded["services"])


def test_the_task_list_shows_each_task_s_campaign_and_result() -> None:
    columns = runpy.run_path(str(ROOT / "flowerconfig.py"))["tasks_columns"].split(",")
    assert {"name", "state", "kwargs", "result", "worker"} <= set(columns)
    assert "flowerconfig.py" in (ROOT / "Dockerfile").read_text()  # read from /app


def test_flower_keeps_its_history_on_a_volume() -> None:
    flower = services()["flower"]
    command = " ".join(flower["command"])
    assert "--persistent=True" in command and "--db=/data/flower/" in command
    assert "flower:/data/flower" in flower["volumes"]


def test_workers_are_named_per_host() -> None:
    worker = services()["worker"]
    command = worker["command"]
    name = command[command.index("-n") + 1]
    assert name.endswith("@%h") and not name.startswith("celery@")
    assert name.replace("%h", "$$HOSTNAME") in " ".join(worker["healthcheck"]["test"])
