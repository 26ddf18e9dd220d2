"""Wall time of the README's example run on the embedded default.

Runs ``dispatcher run campaigns/example`` (a copy, in a fresh state directory, with no
service variables set) REPEAT times and prints each wall time and the median.

    .venv/bin/python bench/example_run.py [REPEAT]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SERVICE_VARIABLES = ("DATABASE_URL", "REDIS_URL", "LINK_BASE_URL", "WEBHOOK_TOKEN", "REPORTS_DIR")


def one_run() -> float:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "example"
        shutil.copytree(
            ROOT / "campaigns" / "example", folder, ignore=shutil.ignore_patterns("reports")
        )
        env = {k: v for k, v in os.environ.items() if k not in SERVICE_VARIABLES}
        env["DISPATCHER_STATE_DIR"] = str(Path(scratch) / "state")
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "dispatcher.interfaces.cli", "run", str(folder)],
            env=env,
            cwd=scratch,
            capture_output=True,
            text=True,
            check=False,
        )
        elapsed = time.perf_counter() - started
        if result.returncode != 0 or "(completed)" not in result.stdout:
            sys.exit(f"run failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return elapsed


def main() -> None:
    repeat = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    times = []
    for number in range(1, repeat + 1):
        times.append(one_run())
        print(f"run {number}: {times[-1]:.2f} s")
    print(
        f"example campaign, embedded default: median {statistics.median(times):.2f} s "
        f"over {repeat} runs (target: under 30 s)"
    )


if __name__ == "__main__":
    main()
