"""A dead alert URL slows nothing: one campaign sent three times by `dispatcher run` in
the embedded mode (SQLite, its own Redis, one worker with beat, the simulator), with
``ALERT_URL`` unset, pointing at a socket that accepts connections and never answers
(every delivery attempt waits for its timeout), and at a refused port.

Printed for each: the send duration (first request to the last one answered, from the
batches' own timestamps), the wall time of the whole run, the alerts queued and their
attempts; then the ratios against the run without alerts.

    .venv/bin/python bench/alerts.py [--people 240] [--level STANDARD]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import func, select  # noqa: E402

from dispatcher.db import Alert, Batch, Database  # noqa: E402
from tests.integration.guardrails.alert_receivers import refused, silent  # noqa: E402

SPEC = """\
name: Alerts bench
sender: {{source: "+4790000000", level: {level}}}
template_category: marketing
message:
  type: template
  template: {{name: hello_world, language: en_US}}
recipients: people.csv
batch_size: 50
"""


def run(folder: Path, alert_url: str | None) -> dict[str, float]:
    """One `dispatcher run` in a fresh state folder; its figures."""
    state = Path(tempfile.mkdtemp(prefix="alerts-bench-", dir=folder))
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LINK_", "META_", "SIMULATOR_", "ALERT_"))
        and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env |= {"DISPATCHER_STATE_DIR": str(state), "REPORTS_DIR": str(state / "reports")}
    if alert_url:
        env |= {"ALERT_URL": alert_url, "ALERT_SECRET": "bench-secret"}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "dispatcher.interfaces.cli", "run", str(folder / "campaign"),
         "--timeout", "300"],
        env=env, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    wall = time.monotonic() - began
    if done.returncode != 0:
        sys.exit(f"dispatcher run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    db = Database(f"sqlite:///{state / 'dispatcher.db'}")
    with db.session() as session:
        first, last = session.execute(
            select(func.min(Batch.submitting_at), func.max(Batch.submitted_at))
        ).one()
        queued, attempts = session.execute(
            select(func.count(Alert.id), func.coalesce(func.sum(Alert.attempts), 0))
        ).one()
    db.dispose()
    assert first is not None and last is not None, "nothing was sent"
    return {
        "send": (last - first).total_seconds(),
        "wall": wall,
        "alerts": queued,
        "attempts": attempts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--people", type=int, default=240)
    parser.add_argument("--level", default="STANDARD", choices=["STANDARD", "HIGH"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alerts-bench-") as tmp:
        folder = Path(tmp)
        campaign = folder / "campaign"
        campaign.mkdir()
        (campaign / "campaign.yaml").write_text(SPEC.format(level=args.level))
        rows = "\n".join(f"+479{n:07d}" for n in range(1000001, 1000001 + args.people))
        (campaign / "people.csv").write_text(f"phone\n{rows}\n")
        results: dict[str, dict[str, float]] = {}
        results["ALERT_URL unset"] = run(folder, None)
        with silent() as url:
            results["ALERT_URL never answers"] = run(folder, url)
        results["ALERT_URL refused"] = run(folder, refused())
    base = results["ALERT_URL unset"]
    print(f"{args.people:,} people, level {args.level}, embedded mode")
    for name, figures in results.items():
        print(
            f"{name:<25} send {figures['send']:6.2f} s (x{figures['send'] / base['send']:.2f})"
            f"   run {figures['wall']:6.2f} s (x{figures['wall'] / base['wall']:.2f})"
            f"   alerts queued {figures['alerts']:.0f}, attempts {figures['attempts']:.0f}"
        )


if __name__ == "__main__":
    main()
