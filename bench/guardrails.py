"""How many messages leave after a bad signal starts, at STANDARD and HIGH, through LINK
and through Meta's Cloud API.

The same real processes as ``bench/throughput.py`` (PostgreSQL, Redis, WORKERS Celery
workers, beat, ``dispatcher serve`` taking every callback, the simulator answering after
50 ms), a media template with the spec's defaults, and ``bench/load.py``'s messy
international list. Two scenarios, each at both levels and through both providers:

    canary     3,000 people; half of all sends fail with 131048 (spam rate limit:
               SIMULATOR_FAILURE_RATE 0.5, SIMULATOR_FAILURE_CODES [131048]); the spec
               says ``canary: {share: 2%}`` (min_people 50 and wait 10m by default).
               Goal: at most 10 % of the list is ever sent.
    template   4,000 people at STANDARD, 20,000 at HIGH (LINK: the default batch_size;
               Meta: one person a request); once a quarter has left, the template is
               set PAUSED in the simulator (``POST /_simulator/templates/status``): LINK
               then reports 132015 for what follows, Meta also posts its
               ``message_template_status_update`` webhook. Goal: after the first report
               of it through the campaign's provider reaches the webhook app, at most
               one slice more leaves (a tenth of a second of the level, or one request
               when it carries more: LINK 40 at STANDARD, 100 at HIGH; Meta 8 and 100).

Printed per run: people, what was sent (distinct people the simulator accepted) and its
share of the list, the campaign's state and the guardrail's words; for the template
scenario also the times from the flip to the first report stored, to the pause, and the
messages accepted after each.

    .venv/bin/python bench/guardrails.py [--scenario canary,template]
        [--level STANDARD,HIGH] [--provider link,meta] [--workers 4] [--keep-logs]

PostgreSQL admin URL: BENCH_POSTGRES_URL; Redis: BENCH_REDIS_URL (flushed before each
run), as ``bench/throughput.py``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import redis  # noqa: E402
import throughput as tp  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from dispatcher.db import Campaign, Database, DeliveryReport, Message, migrate  # noqa: E402
from dispatcher.guardrails.pausing import describe  # noqa: E402

TEMPLATE = "bench_notice"
CANARY_PEOPLE = 3_000
TEMPLATE_PEOPLE = {"STANDARD": 4_000, "HIGH": 20_000}
#: Workers look at the campaign once a slice: a tenth of a second of the level (or one
#: request, when a request carries more).
SLICE_SECONDS = 0.1
SETTLE_SECONDS = 5.0  # watched after the pause, for stragglers


@dataclass(slots=True)
class Result:
    scenario: str
    provider: str
    level: str
    people: int
    sent: int = 0
    state: str = ""
    why: str = ""
    seconds_to_pause: float | None = None
    flip_to_report: float | None = None
    report_to_pause: float | None = None
    after_report: int | None = None
    after_pause: int | None = None
    largest_request: int = 1
    flipped_at: float | None = None  # when the template was set PAUSED
    note: str = ""

    @property
    def slice(self) -> int:
        """Messages in a slice: a tenth of a second of the level, or one request
        (``sending.fanout``: a slice is never less than a batch)."""
        return max(int(tp.LEVELS[self.level] * SLICE_SECONDS), self.largest_request)


def write_campaign(folder: Path, recipients: Path, provider: str, level: str, canary: bool) -> None:
    scenario = tp.Scenario(f"guardrails-{provider}", level, 0, None, False, provider)
    tp.write_campaign(folder, scenario, recipients)
    spec = folder / "campaign.yaml"
    text = spec.read_text(encoding="utf-8").replace("name: Throughput", "name: Guardrails")
    if canary:
        text += "canary: {share: 2%}\n"
    spec.write_text(text, encoding="utf-8")


def start(
    processes: tp.Processes,
    url: str,
    tmp: Path,
    args: argparse.Namespace,
    level: str,
    failing: bool,
) -> tuple[dict[str, str], str]:
    webhook_port, simulator_port = tp.free_port(), tp.free_port()
    simulator_url = f"http://127.0.0.1:{simulator_port}"
    env = tp.stack_env(url, simulator_url, tmp) | {
        "SIMULATOR_LEVEL": level,
        "SIMULATOR_ENFORCE_LEVEL": "true",
        "SIMULATOR_RESPONSE_DELAY_MS": "50",
        "SIMULATOR_SEED": "7",
        "SIMULATOR_META_WEBHOOK_URL": f"http://127.0.0.1:{webhook_port}/webhooks/meta",
    }
    if failing:
        env |= {"SIMULATOR_FAILURE_RATE": "0.5", "SIMULATOR_FAILURE_CODES": "[131048]"}
    serve = processes.start(
        "serve",
        tp.dispatcher_command("serve", "--port", str(webhook_port), "--internal-port", "0"),
        env,
    )
    tp.wait_http(f"http://127.0.0.1:{webhook_port}/healthz", serve)
    gate = f"{tp.GATE}=http://127.0.0.1:{webhook_port}/webhooks/link/dlr?token={tp.TOKEN}"
    simulator = processes.start(
        "simulate",
        tp.dispatcher_command("simulate", "--port", str(simulator_port), "--gate", gate),
        env,
        priority=tp.SIMULATOR_PRIORITY,
    )
    tp.wait_http(f"{simulator_url}/healthz", simulator)
    for index in range(args.workers):
        processes.start(f"worker{index}", tp.worker_command("workers", index, 1), env)
    processes.start("beat", tp.beat_command(tmp / "beat-schedule"), env)
    tp.wait_workers(args.workers, processes)
    return env, simulator_url


def receipts(simulator_url: str) -> list[tuple[float, int]]:
    answer = httpx.get(f"{simulator_url}/_simulator/receipts", timeout=120).json()
    return [(float(at), int(count)) for at, count in answer]


def sent_people(simulator_url: str) -> int:
    stats = httpx.get(f"{simulator_url}/_simulator/stats", timeout=120).json()
    return len(stats["destinations"])


def campaign(db: Database) -> tuple[int, str, dict[str, Any] | None]:
    with db.session() as session:
        row = session.execute(
            select(Campaign.id, Campaign.state, Campaign.paused_by).order_by(Campaign.id.desc())
        ).first()
    if row is None:
        return 0, "none", None
    return int(row[0]), str(row[1]), row[2]


def wait_state(db: Database, processes: tp.Processes, timeout: float) -> str:
    """Wait for the campaign to stop sending (paused, completed, failed, cancelled)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check()
        _, state, _ = campaign(db)
        if state in ("paused", "completed", "failed", "cancelled"):
            return state
        time.sleep(0.2)
    return campaign(db)[1]


def run(scenario: str, provider: str, level: str, args: argparse.Namespace) -> Result:
    people_wanted = CANARY_PEOPLE if scenario == "canary" else TEMPLATE_PEOPLE[level]
    recipients, people = tp.messy_list(people_wanted)
    result = Result(scenario, provider, level, people)
    client = redis.Redis.from_url(tp.REDIS_URL)
    client.flushdb()
    client.close()
    url = tp.create_database()
    tmp = Path(tempfile.mkdtemp(prefix="guardrails-"))
    logs = tmp / "logs"
    logs.mkdir()
    processes = tp.Processes(logs)
    failed = False
    try:
        migrate(url)
        folder = tmp / "campaign"
        write_campaign(folder, recipients, provider, level, canary=scenario == "canary")
        env, simulator_url = start(processes, url, tmp, args, level, failing=scenario == "canary")
        db = Database(url)
        print(f"\n== {scenario} / {provider} / {level}: {people:,} people", flush=True)
        queued_at = time.time()
        done = subprocess.run(tp.dispatcher_command("run", str(folder), "--detach"), env=env,
                              cwd=tmp, capture_output=True, text=True, timeout=600)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"dispatcher run failed:\n{done.stdout}{done.stderr}")
        if scenario == "template":
            flip_template(db, simulator_url, processes, result, people)
        state = wait_state(db, processes, args.timeout)
        time.sleep(SETTLE_SECONDS)
        campaign_id, result.state, paused_by = campaign(db)
        result.sent = sent_people(simulator_url)
        if paused_by:
            result.why = describe(paused_by)
            paused_at = _epoch(paused_by["at"])
            result.seconds_to_pause = paused_at - queued_at
            late = receipts(simulator_url)
            result.largest_request = max((n for _, n in late), default=1)
            result.after_pause = sum(n for at, n in late if at > paused_at)
            if scenario == "template" and result.flip_to_report is not None:
                reported = result.flip_to_report + (result.flipped_at or 0.0)
                result.report_to_pause = paused_at - reported
                result.after_report = sum(n for at, n in late if at > reported)
        elif state != "paused":
            result.note = f"not paused: {state}"
        with db.session() as session:
            result.note += _statuses(session, campaign_id)
        db.dispose()
    except Exception as exc:
        failed = True
        result.note = f"error: {exc}".splitlines()[0][:200]
        print(f"{scenario}/{provider}/{level}: {exc}", file=sys.stderr)
    finally:
        processes.stop()
        if failed or args.keep_logs:
            print(processes.tails(), file=sys.stderr)
        tp.drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    report(result)
    return result


def flip_template(
    db: Database, simulator_url: str, processes: tp.Processes, result: Result, people: int
) -> None:
    """Once a quarter of the people have left, set the template PAUSED; note when the
    first report of it was stored by the webhook app."""
    deadline = time.monotonic() + 600
    while sum(n for _, n in receipts(simulator_url)) < people // 4:
        processes.check()
        if time.monotonic() > deadline:
            raise RuntimeError("a quarter of the list never left")
        time.sleep(0.05)
    flipped = result.flipped_at = time.time()
    answer = httpx.post(f"{simulator_url}/_simulator/templates/status",
                        json={"name": TEMPLATE, "status": "PAUSED"}, timeout=30)  # fmt: skip
    answer.raise_for_status()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with db.session() as session:
            first = session.scalar(
                select(func.min(DeliveryReport.received_at)).where(
                    DeliveryReport.received_at >= _aware(flipped), _reports_of(result.provider)
                )
            )
        if first is not None:
            result.flip_to_report = first.timestamp() - flipped
            return
        time.sleep(0.05)


def _reports_of(provider: str) -> Any:
    """The bodies that tell the campaign's provider's side of the template's pause: LINK's
    reports of 132015; Meta's too, and its template webhook (which the simulator also
    posts during a LINK campaign: Meta's news about Meta's templates, not LINK's)."""
    failed = DeliveryReport.body.contains(b"132015")
    if provider == "link":
        return (DeliveryReport.kind == "dlr") & failed
    return (DeliveryReport.kind == "meta") & (
        failed | DeliveryReport.body.contains(b"message_template_status_update")
    )


def _aware(epoch: float) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp()


def _statuses(session: Any, campaign_id: int) -> str:
    rows = session.execute(
        select(Message.status, func.count())
        .where(Message.campaign_id == campaign_id)
        .group_by(Message.status)
    ).all()
    return "; ".join(f"{count:,} {status}" for status, count in sorted(rows))


def report(r: Result) -> None:
    share = r.sent / r.people if r.people else 0.0
    print(f"  sent {r.sent:,} of {r.people:,} people ({share:.1%}); campaign {r.state}")
    if r.why:
        print(f"  paused by: {r.why}")
    if r.seconds_to_pause is not None:
        print(f"  paused {r.seconds_to_pause:.1f} s after it was queued; "
              f"{r.after_pause} messages accepted after the pause")  # fmt: skip
    if r.flip_to_report is not None:
        print(f"  template paused -> first report stored {r.flip_to_report * 1000:.0f} ms; "
              f"-> campaign paused {(r.report_to_pause or 0) * 1000:.0f} ms later; "
              f"{r.after_report} messages left after the report (a slice: {r.slice})")  # fmt: skip
    if r.note:
        print(f"  messages: {r.note}")


def table(results: list[Result]) -> None:
    print("\n| scenario | provider | level | people | sent | share | goal | met |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        if r.scenario == "canary":
            goal, met = "<= 10 % sent", r.people > 0 and r.sent <= r.people * 0.10
            shown = f"{r.sent / r.people:.1%}" if r.people else "-"
        else:
            goal = f"<= {r.slice} after the report"
            met = r.after_report is not None and r.after_report <= r.slice
            shown = f"{r.after_report} after the report" if r.after_report is not None else "-"
        print(f"| {r.scenario} | {r.provider} | {r.level} | {r.people:,} | {r.sent:,} | "
              f"{shown} | {goal} | {'yes' if met else 'NO'} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", default="canary,template")
    parser.add_argument("--level", default="STANDARD,HIGH")
    parser.add_argument("--provider", default="link,meta")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=180.0)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args()
    results = [
        run(scenario, provider, level, args)
        for scenario in args.scenario.split(",")
        for provider in args.provider.split(",")
        for level in args.level.split(",")
    ]
    table(results)


if __name__ == "__main__":
    main()
