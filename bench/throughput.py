"""How well every worker together holds a sender at its throughput level, and what a
message costs in CPU, under the conditions a user has.

For each scenario, on a throwaway PostgreSQL database and a dedicated Redis database
(flushed first), real processes as in production:

* the LINK simulator (``dispatcher simulate``) answering each request after 50 ms
  (``SIMULATOR_RESPONSE_DELAY_MS``), recording every accepted request
  (``SIMULATOR_RECORD_REQUESTS``), at the scenario's level with level enforcement on
  (``SIMULATOR_LEVEL``, ``SIMULATOR_ENFORCE_LEVEL``: what exceeds the level in a
  second is failed with 130429 in its DLR, as Meta does), and posting every delivery
  report (enroute, delivered, read: about three a message) to the webhook app, as LINK
  does (``--no-callbacks`` turns that off: the send path alone, not the product);
* ``dispatcher serve``, taking those callbacks;
* WORKERS ``celery -A workers worker`` processes (threads pool, CONCURRENCY task
  threads each, default 1: one task at a time, as a prefork child; queues
  prepare,send,dlr) and one ``celery -A workers beat`` (report sweep);
* a campaign written to a temporary folder and queued with ``dispatcher run PATH
  --detach``: a media template (an image header, uploaded once) with the spec's
  defaults, to ``bench/load.py``'s messy international list (numbers of every region
  in the forms spreadsheets hold, duplicates by another identifier, invalid rows); the
  benchmark waits until every message was submitted and, with callbacks, until every
  report was posted and applied, then reads the simulator's own books.

Scenarios (people scaled by --scale; "batched": one content for all, so requests
carry many people; "personalised": a unique value in each body, one person a request):

    standard-batched        4,000 people, STANDARD (80 msg/s), the default batch_size (50)
    standard-batched-80     the same, batch_size 80
    standard-batched-100    the same, batch_size 100 (more than the level: 80 a request)
    high-batched           20,000 people, HIGH (1000 msg/s), the default batch_size
    high-batched-80        the same, batch_size 80
    high-batched-100       the same, batch_size 100
    standard-personalised   3,000 people, STANDARD, one person a request
    high-personalised      20,000 people, HIGH, one person a request

With --naive each scenario runs a second time on ``bench/naive_worker.py`` workers:
the same number of processes, the project's sending code without the shared limiter,
and Celery's per-task ``rate_limit`` set to the level, in tasks: level / destinations
per request. Celery enforces it per worker process.

Printed per run, from the simulator only (``GET /_simulator/stats``, ``/requests`` and
``/receipts``, the time and messages of every accepted request): people accepted
(distinct destinations; any sent twice), requests and destinations per request, the
sending period (first to last receipt), the achieved msg/s over it and its share of
the level, the most messages in any sliding 1-second window and how many windows went
over the level (also per calendar second, what the simulator's 130429 enforcement
counts), the 130429 failures it issued. Then the CPU (user + system, from /proc) of
each process kind from queueing to the last report applied, whole process trees with
their ended children (the webhook app's applier child counts as the webhook app,
ended backends as PostgreSQL): workers, beat, webhook app, PostgreSQL, Redis, and the
simulator (LINK's stand-in: part of the measuring machine, not of the product), in ms
a message, a request and a callback, and the workers' split by task from the workers'
own count (``dispatcher.operations.task_cpu``: the send tasks a request, a campaign's
preparation a person, the periodic tasks), beside the yardstick measured in the same run
(``bench/cpu.py``, before and after it: the machine's speed drifts within minutes, so
the mean of the two) and scaled to the reference yardstick of 250 us; and the peak RSS
of a worker. For context: the machine's load average when the campaign is queued and
the sender's rate factor in the shared limiter afterwards (below 1 after rate-limit
signals).

The simulator runs ahead of everything else for the CPU where allowed (real-time
scheduling, else a raised priority; printed with each run): it stands for
LINK's servers, whose clocks our CPUs do not delay, and its receipt log is the
measurement.

With --provider meta the campaigns send through Meta's Cloud API instead (the simulator
plays Meta: one recipient a request, per-number throughput enforced with 130429, status
webhooks signed with the app secret and posted to ``/webhooks/meta``, about three a
message); every Meta request is one person, so only the personalised scenarios apply
(the default), and a "batched" scenario is one person a request with one content.

    .venv/bin/python bench/throughput.py [--scenario standard-batched,...] [--scale 1.0]
        [--provider link|meta] [--naive] [--workers 4] [--concurrency 1] [--delay-ms 50]
        [--timeout SECONDS] [--stall 60] [--keep-logs] [--no-callbacks]
        [--save-receipts DIR]

PostgreSQL admin URL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test);
Redis: BENCH_REDIS_URL (default redis://127.0.0.1:6379/13, flushed before each run).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cpu  # noqa: E402  (bench/cpu.py)

from dispatcher.campaigns.spec import DEFAULT_BATCH_SIZE  # noqa: E402
from dispatcher.sending.fanout import LATE_SHARE, TIMER_SLACK_SECONDS  # noqa: E402
from dispatcher.sending.throttle import JITTER_MARGIN_SECONDS  # noqa: E402

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
TOKEN = "bench-token"
GATE = "bench-gate"
USERNAME, PASSWORD = "bench", "bench-password"
PLATFORM_ID, PLATFORM_PARTNER_ID = "BENCH", "1"
SOURCE = "+4790000000"
LEVELS = {"STANDARD": 80, "HIGH": 1000}
META_TOKEN, META_SECRET = "bench-meta-token", "bench-app-secret"
META_PHONE_NUMBER_ID = "106540352242922"  # the simulator's number for SOURCE
META_WABA_ID = "102290129340398"


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    level: str
    people: int
    batch_size: int | None  # None: the spec's default (not written in the spec)
    personalised: bool

    @property
    def rate(self) -> int:
        return LEVELS[self.level]

    provider: str = "link"

    @property
    def per_request(self) -> int:
        """Destinations in a full request."""
        if self.personalised or self.provider == "meta":
            return 1
        return min(self.batch_size or DEFAULT_BATCH_SIZE, self.rate)


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("standard-batched", "STANDARD", 4_000, None, False),
        Scenario("standard-batched-80", "STANDARD", 4_000, 80, False),
        Scenario("standard-batched-100", "STANDARD", 4_000, 100, False),
        Scenario("high-batched", "HIGH", 20_000, None, False),
        Scenario("high-batched-80", "HIGH", 20_000, 80, False),
        Scenario("high-batched-100", "HIGH", 20_000, 100, False),
        Scenario("standard-personalised", "STANDARD", 3_000, None, True),
        Scenario("high-personalised", "HIGH", 20_000, None, True),
    )
}


@dataclass(slots=True)
class Figures:
    scenario: str
    variant: str
    level: int
    people: int
    accepted: int = 0
    twice: int = 0
    requests: int = 0
    per_request: tuple[int, float, int] = (0, 0.0, 0)
    messages: int = 0
    period: float = 0.0
    achieved: float = 0.0
    max_second: int = 0
    seconds_over: int = 0
    max_window: int = 0
    windows_over: int = 0
    # Of those, the windows that begin in a stall of the simulator's own loop (or just
    # after it): requests it read late, all stamped as the stall ended.
    windows_at_stalls: int = 0
    stalls: int = 0  # the simulator's loop stalls past STALL_MARGIN_SECONDS, and the longest
    longest_stall: float = 0.0
    rate_limited: int = 0
    rejected: dict[str, int] | None = None
    factor: float | None = None
    load: float = 0.0
    simulator_scheduling: str = ""  # how the kernel scheduled the simulator (``scheduling``)
    note: str = ""
    cpu: dict[str, float] = field(default_factory=dict)  # seconds, by process kind
    # The workers' CPU by task kind (``dispatcher.operations.task_cpu``): seconds, runs.
    tasks: dict[str, tuple[float, int]] = field(default_factory=dict)
    callbacks: int = 0  # callbacks the webhook app took
    # bench/cpu.py, microseconds: measured before and after the run (the machine's
    # speed drifts within minutes); the figures are scaled by their mean
    yardsticks: tuple[float, ...] = ()
    rss_mb: float = 0.0  # the highest peak RSS of a worker process

    @property
    def share(self) -> float:
        return self.achieved / self.level

    @property
    def yardstick(self) -> float:
        return sum(self.yardsticks) / len(self.yardsticks) if self.yardsticks else 0.0


# -- the campaign ---------------------------------------------------------------------------


def messy_list(people: int) -> tuple[Path, int]:
    """``bench/load.py``'s messy international list (numbers of every region in the
    forms spreadsheets hold, 5 % of people listed twice by another identifier, 1 %
    invalid rows), with a ``code`` column unique to each row; cached under /tmp. Returns
    the file and the people in it."""
    import csv

    import load

    rows = -(-people * 100 // 94)  # generate() plants 94 % of its rows as people
    cache = Path(tempfile.gettempdir()) / f"dispatcher-throughput-{rows}"
    path, planted = cache / "recipients.csv", cache / "planted.json"
    if not planted.exists():
        cache.mkdir(parents=True, exist_ok=True)
        raw = cache / "raw.csv"
        counts = load.generate(raw, rows)
        with (
            raw.open(encoding="utf-8", newline="") as source,
            path.open("w", encoding="utf-8", newline="") as target,
        ):
            reader, writer = csv.reader(source), csv.writer(target)
            writer.writerow([*next(reader), "code"])
            writer.writerows([*row, f"C{index:07d}"] for index, row in enumerate(reader))
        raw.unlink()
        planted.write_text(json.dumps(counts))
    return path, int(json.loads(planted.read_text())["people"])


def write_campaign(folder: Path, scenario: Scenario, recipients: Path) -> None:
    """A media template (an image header, uploaded once) with the spec's defaults; the
    personalised one carries each row's unique ``code``, so every request is one person."""
    folder.mkdir(parents=True)
    shutil.copy(ROOT / "campaigns" / "example" / "banner.png", folder / "banner.png")
    shutil.copy(recipients, folder / "recipients.csv")
    body = '"{code}"' if scenario.personalised else '"SPRING25"'
    batch_size = "" if scenario.batch_size is None else f"batch_size: {scenario.batch_size}\n"
    meta = (
        f', provider: meta, phone_number_id: "{META_PHONE_NUMBER_ID}"'
        if scenario.provider == "meta"
        else ""
    )
    (folder / "campaign.yaml").write_text(
        f"name: Throughput {scenario.name}\n"
        f'sender: {{source: "{SOURCE}", level: {scenario.level}{meta}}}\n'
        "template_category: marketing\n"
        "message:\n  type: template\n  template:\n    name: bench_notice\n"
        "    language: en\n    components:\n"
        "      - type: header\n        parameters:\n"
        "          - {type: image, image: {file: banner.png}}\n"
        "      - type: body\n        parameters:\n"
        f"          - {{type: text, text: {body}}}\n"
        "recipients: recipients.csv\n"
        'default_region: "NO"\n' + batch_size,
        encoding="utf-8",
    )


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without any dispatcher, LINK or simulator setting of its own."""
    own = ("DATABASE_URL", "REDIS_URL", "WEBHOOK_TOKEN", "REPORTS_DIR", "RESEND_MIN_DELAY")
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LINK_", "META_", "SIMULATOR_", "DISPATCHER_", "NAIVE_", *own))
    }


class Processes:
    """Started processes (each its own process group), stopped in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self, name: str, command: list[str], env: dict[str, str], *, priority: int = 0
    ) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=self.logs,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=(lambda: _raise_priority(priority)) if priority else None,
            )
        self.running.append((name, process))
        return process

    def check(self) -> None:
        for name, process in self.running:
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}")

    def stop(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for _, process in reversed(self.running):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self.running.clear()

    def tails(self, chars: int = 3000) -> str:
        return "".join(
            f"----- {log.name}\n{log.read_text(errors='replace')[-chars:]}\n"
            for log in sorted(self.logs.iterdir())
        )


#: The simulator stands in for LINK's own servers, which do not share our CPUs: it runs
#: ahead of the workers for the CPU (when allowed: ``_raise_priority``), so its receipt
#: log records when requests arrived rather than when two busy cores got round to
#: reading them. Its niceness where real-time scheduling is not allowed:
SIMULATOR_PRIORITY = 10


def _raise_priority(steps: int) -> None:
    """Real-time (round robin, the lowest real-time priority) where allowed, else
    ``steps`` of niceness, else as is. Niceness only weighs the shares: on two busy cores
    a nice -10 simulator still waited tens of milliseconds for a core now and then, and
    what came meanwhile was stamped as it ended, bunched into one window. Real-time, it
    runs as soon as a request comes (the kernel's default still leaves others 5 % of
    each core: ``sched_rt_runtime_us``)."""
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(1))
        return
    except (OSError, AttributeError):  # not allowed (not root), or not Linux
        pass
    with contextlib.suppress(OSError):  # not allowed either: run as is
        os.nice(-steps)


def scheduling(pid: int) -> str:
    """How the kernel schedules a process: real-time, or its niceness."""
    with contextlib.suppress(OSError, AttributeError):
        if os.sched_getscheduler(pid) in (os.SCHED_RR, os.SCHED_FIFO):
            return "real-time"
    try:
        return f"nice {os.getpriority(os.PRIO_PROCESS, pid)}"
    except OSError:
        return "unknown"


def wait_http(url: str, process: subprocess.Popen[bytes], timeout_seconds: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout_seconds:.0f} s")


def wait_workers(count: int, processes: Processes, timeout_seconds: float = 60) -> None:
    """Until ``count`` workers answer a broadcast ping on the broker."""
    from celery import Celery

    probe = Celery("bench-probe", broker=REDIS_URL)
    deadline = time.monotonic() + timeout_seconds
    try:
        while time.monotonic() < deadline:
            processes.check()
            if len(probe.control.ping(timeout=1.0)) >= count:
                return
        raise RuntimeError(f"{count} workers did not answer within {timeout_seconds:.0f} s")
    finally:
        probe.close()


def dispatcher_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "dispatcher.interfaces.cli", *args]


def worker_command(app: str, index: int, concurrency: int) -> list[str]:
    """As ``dispatcher.interfaces.embedded.worker_command``, without beat (one beat runs apart)."""
    return [
        sys.executable, "-m", "celery", "-A", app, "worker",
        "--pool", "threads", "--concurrency", str(concurrency),
        "--queues", "prepare,send,dlr",
        "--hostname", f"bench{index}-{os.getpid()}@%h", "--loglevel", "WARNING",
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def beat_command(schedule: Path) -> list[str]:
    """The periodic report sweep and resends, sent by name to whichever workers run."""
    return [sys.executable, "-m", "celery", "-A", "workers", "beat",
            "--schedule", str(schedule), "--loglevel", "WARNING"]  # fmt: skip


def stack_env(url: str, simulator_url: str, tmp: Path) -> dict[str, str]:
    """This environment with the settings of a production stack on loopback: the
    database ``url``, the benchmark's Redis, and LINK and Meta both played by the
    simulator at ``simulator_url`` (each benchmark adds its own simulator knobs)."""
    return clean_env() | {
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "LINK_BASE_URL": simulator_url,
        "LINK_USERNAME": USERNAME,
        "LINK_PASSWORD": PASSWORD,
        "LINK_PLATFORM_ID": PLATFORM_ID,
        "LINK_PLATFORM_PARTNER_ID": PLATFORM_PARTNER_ID,
        "LINK_EVENT_REPORT_GATE": GATE,
        "WEBHOOK_TOKEN": TOKEN,
        "REPORTS_DIR": str(tmp / "reports"),
        "DROP_DIR": str(tmp / "drop"),
        "META_BASE_URL": simulator_url,
        "META_ACCESS_TOKEN": META_TOKEN,
        "META_APP_SECRET": META_SECRET,
        "META_WABA_ID": META_WABA_ID,
        "SIMULATOR_USERNAME": USERNAME,
        "SIMULATOR_PASSWORD": PASSWORD,
        "SIMULATOR_PLATFORM_ID": PLATFORM_ID,
        "SIMULATOR_PLATFORM_PARTNER_ID": PLATFORM_PARTNER_ID,
        "SIMULATOR_RECORD_REQUESTS": "true",
        "SIMULATOR_META_ACCESS_TOKEN": META_TOKEN,
        "SIMULATOR_META_APP_SECRET": META_SECRET,
    }


# -- the database -----------------------------------------------------------------------------


def create_database() -> str:
    from sqlalchemy import create_engine, text

    name = f"throughput_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
    admin.dispose()


def campaign_progress(url: str) -> tuple[str, str | None, int, int]:
    """(state, error, messages submitted, messages) of the campaign, or ("none", None,
    0, 0)."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        row = connection.execute(
            "SELECT CASE WHEN c.prepared_at IS NULL AND c.state = 'sending'"
            " THEN 'preparing' ELSE c.state END, c.error, count(m.submitted_at), count(m.id)"
            " FROM campaigns c LEFT JOIN messages m ON m.campaign_id = c.id"
            " GROUP BY c.id ORDER BY c.id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return "none", None, 0, 0
    return str(row[0]), row[1], int(row[2]), int(row[3])


def batches_to_send(url: str, count: bool) -> tuple[str, str | None, int]:
    """(state, error, batches not yet sent) of the newest campaign (its database holds
    no other): the cheap look taken every half second while it sends, which the
    PostgreSQL figures carry. Without ``count``, 1 stands for any number of batches."""
    import psycopg

    unsent = "batches b WHERE b.state IN ('pending', 'submitting', 'held', 'waiting')"
    how = (
        f"(SELECT count(*) FROM {unsent})"
        if count
        else f"(SELECT count(*) FROM (SELECT 1 FROM {unsent} LIMIT 1) s)"
    )
    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        row = connection.execute(
            "SELECT CASE WHEN c.prepared_at IS NULL AND c.state = 'sending'"
            f" THEN 'preparing' ELSE c.state END, c.error, {how}"
            " FROM campaigns c ORDER BY c.id DESC LIMIT 1"
        ).fetchone()
    if row is None:
        return "none", None, 0
    return str(row[0]), row[1], int(row[2])


def unsent_batches(url: str) -> str:
    """Batches not submitted, by state, each with one of their errors."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        rows = connection.execute(
            "SELECT state, count(*), max(error) FROM batches WHERE state <> 'submitted'"
            " GROUP BY state ORDER BY count(*) DESC"
        ).fetchall()
    return "; ".join(
        f"{count} {state}" + (f" ({error[:120]})" if error else "") for state, count, error in rows
    )


# -- one run ------------------------------------------------------------------------------------


def run(scenario: Scenario, wanted: int, naive: bool, args: argparse.Namespace) -> Figures:
    import httpx
    import redis

    from dispatcher.db import migrate

    variant = "naive" if naive else "ours"
    label = f"{scenario.name} / {variant}"
    recipients, people = messy_list(wanted)
    figures = Figures(scenario.name, variant, scenario.rate, people)
    figures.yardsticks = (cpu.yardstick_us(),)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    url = create_database()
    tmp = Path(tempfile.mkdtemp(prefix="throughput-"))
    logs = tmp / "logs"
    logs.mkdir()
    processes = Processes(logs)
    failed = False
    try:
        migrate(url)
        folder = tmp / "campaign"
        write_campaign(folder, scenario, recipients)
        webhook_port, simulator_port = free_port(), free_port()
        simulator_url = f"http://127.0.0.1:{simulator_port}"
        naive_rate = f"{scenario.rate / scenario.per_request:g}/s"
        env = stack_env(url, simulator_url, tmp) | {
            "SIMULATOR_LEVEL": scenario.level,
            "SIMULATOR_ENFORCE_LEVEL": "true",
            "SIMULATOR_RESPONSE_DELAY_MS": str(args.delay_ms),
            "SIMULATOR_SEED": "7",
        }
        if args.callbacks:
            env["SIMULATOR_META_WEBHOOK_URL"] = f"http://127.0.0.1:{webhook_port}/webhooks/meta"
        serve = processes.start(
            "serve",
            dispatcher_command("serve", "--port", str(webhook_port), "--internal-port", "0"),
            env,
        )
        wait_http(f"http://127.0.0.1:{webhook_port}/healthz", serve)
        gate = f"{GATE}=http://127.0.0.1:{webhook_port}/webhooks/link/dlr?token={TOKEN}"
        gates = ["--gate", gate] if args.callbacks else []
        simulator = processes.start(
            "simulate",
            dispatcher_command("simulate", "--port", str(simulator_port), *gates),
            env,
            priority=SIMULATOR_PRIORITY,
        )
        wait_http(f"{simulator_url}/healthz", simulator)
        figures.simulator_scheduling = scheduling(simulator.pid)
        if naive:
            worker_env = env | {
                "NAIVE_RATE_LIMIT": naive_rate,
                "PYTHONPATH": os.pathsep.join(
                    [str(ROOT / "bench"), str(ROOT), env.get("PYTHONPATH", "")]
                ).rstrip(os.pathsep),
            }
            app = "naive_worker"
        else:
            worker_env, app = env, "workers"
        workers = [
            processes.start(
                f"worker{index}", worker_command(app, index, args.concurrency), worker_env
            )
            for index in range(args.workers)
        ]
        beat = processes.start("beat", beat_command(tmp / "beat-schedule"), env)
        wait_workers(args.workers, processes)
        figures.load = os.getloadavg()[0]
        kinds = {
            "workers": [w.pid for w in workers],
            "beat": [beat.pid],
            "webhook app": [serve.pid],
            "PostgreSQL": cpu.service_roots("postgres"),
            "Redis": cpu.service_roots("redis-server"),
            "simulator": [simulator.pid],
        }
        before = cpu.Snapshot.take(kinds)
        how = (
            f"Celery rate_limit {naive_rate} per worker, no shared limiter"
            if naive
            else "shared Redis limiter"
        )
        print(
            f"\n== {label}: {people:,} people at {scenario.level} ({scenario.rate} msg/s), "
            f"{args.workers} workers x {args.concurrency} threads, {how}",
            flush=True,
        )
        queued = subprocess.run(
            dispatcher_command("run", str(folder), "--detach"),
            env=env,
            cwd=tmp,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if queued.returncode != 0:
            raise RuntimeError(f"dispatcher run failed:\n{queued.stdout}{queued.stderr}")
        figures.note = follow(url, scenario, processes, args)
        if args.callbacks and not figures.note:
            figures.note = drained(url, simulator_url, processes)
        figures.cpu = cpu.Snapshot.take(kinds).since(before)
        figures.rss_mb = max(cpu.peak_rss_mb(w.pid) for w in workers)
        figures.factor = None if naive else limiter_factor()
        figures.tasks = task_totals()
        stats = httpx.get(f"{simulator_url}/_simulator/stats", timeout=120).json()
        figures.callbacks = int(stats.get("callbacks", {}).get("delivered", 0))
        recorded = httpx.get(f"{simulator_url}/_simulator/requests", timeout=300).json()
        # Meta's sends are kept apart: one message to one person each.
        recorded += [
            sent["body"]
            for sent in httpx.get(f"{simulator_url}/_simulator/meta/requests", timeout=300).json()
        ]
        receipts = httpx.get(f"{simulator_url}/_simulator/receipts", timeout=300).json()
        if args.save_receipts:
            args.save_receipts.mkdir(parents=True, exist_ok=True)
            kind = "naive" if naive else "ours"
            (args.save_receipts / f"{scenario.name}-{kind}.json").write_text(json.dumps(receipts))
        stalls = httpx.get(f"{simulator_url}/_simulator/stalls", timeout=60).json()
        if args.save_receipts:
            stalls_file = args.save_receipts / f"{scenario.name}-{kind}-stalls.json"
            stalls_file.write_text(json.dumps(stalls))
        measure(figures, stats, recorded, receipts, stalls)
    except Exception as exc:
        failed = True
        figures.note = f"error: {exc}".splitlines()[0][:200]
        print(f"{label}: {exc}", file=sys.stderr)
    finally:
        processes.stop()
        if failed or args.keep_logs:
            print(processes.tails(), file=sys.stderr)
        drop_database(url)
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        figures.yardsticks += (cpu.yardstick_us(),)
    except Exception as exc:  # the run's figures still stand, at the first yardstick
        print(f"{label}: the yardstick after the run failed: {exc}", file=sys.stderr)
    report(figures)
    return figures


def limiter_factor() -> float | None:
    """The sender's share of its level in the shared limiter (lowered by rate-limit
    signals), or None if it cannot be read."""
    import redis

    from dispatcher.sending.throttle import Throttle

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return float(Throttle(client).factor(SOURCE))
    except Exception:
        return None
    finally:
        client.close()


def task_totals() -> dict[str, tuple[float, int]]:
    """The workers' CPU by task kind in this run (Redis was flushed before it), or {}."""
    import redis

    from dispatcher.operations import task_cpu

    client = redis.Redis.from_url(REDIS_URL)
    try:
        return task_cpu.totals(client)
    except Exception:
        return {}
    finally:
        client.close()


def follow(url: str, scenario: Scenario, processes: Processes, args: argparse.Namespace) -> str:
    """Wait until every message of the campaign is submitted; '' then, else why it
    stopped waiting."""
    started = last_change = time.monotonic()
    last = -1
    messages = 0
    looks = 0
    while True:
        processes.check()
        looks += 1
        state, error, unsent = batches_to_send(url, count=looks % 10 == 1)  # every 5 s
        now = time.monotonic()
        prepared = state not in ("none", "draft", "scheduled", "preparing")
        if prepared and not messages:
            messages = campaign_progress(url)[3]
        timeout = args.timeout or max(120.0, 5 * messages / scenario.rate + 60)
        if prepared and unsent == 0:
            _, _, submitted, messages = campaign_progress(url)
            if submitted >= messages:
                return ""
        if state in ("failed", "cancelled"):
            return f"campaign {state}: {error}"
        if looks % 10 == 1 and unsent != last:
            last, last_change = unsent, now
        if now - last_change > args.stall:
            why = f"nothing submitted for {args.stall:.0f} s"
        elif now - started > timeout:
            why = f"timeout after {timeout:.0f} s"
        else:
            time.sleep(0.5)
            continue
        submitted = campaign_progress(url)[2]
        return f"{why}, {submitted:,} submitted; batches: {unsent_batches(url) or '-'}"


def drained(url: str, simulator_url: str, processes: Processes, timeout: float = 120) -> str:
    """Wait until the simulator has no callback left to post and every stored report was
    applied, so the CPU figures carry each message's whole cost; '' then."""
    import httpx
    import psycopg

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        processes.check()
        pending = httpx.get(f"{simulator_url}/_simulator/stats", timeout=60).json()
        with psycopg.connect(url.replace("+psycopg", "")) as connection:
            row = connection.execute(
                "SELECT count(*) FROM delivery_reports WHERE state = 'received'"
            ).fetchone()
        if pending["callbacks"]["pending"] == 0 and row is not None and row[0] == 0:
            return ""
        time.sleep(0.5)
    return f"callbacks still pending after {timeout:.0f} s"


# -- figures ------------------------------------------------------------------------------------


def measure(
    figures: Figures,
    stats: dict[str, Any],
    recorded: list[dict[str, Any]],
    receipts: list[tuple[float, int]],
    stalls: Sequence[Sequence[float]] = (),
) -> None:
    """Everything from the simulator's books: its receipt log (time and messages of each
    accepted request), per-second counts, request bodies, and the stalls of its own loop
    (``[[time it ended, seconds], ...]``)."""
    seconds: Counter[int] = Counter()
    for buckets in stats["per_second"].values():
        for second, count in buckets.items():
            seconds[int(second)] += count
    destinations: dict[str, int] = stats["destinations"]
    figures.accepted = len(destinations)
    figures.twice = sum(1 for n in destinations.values() if n > 1)
    figures.rejected = stats["rejected_requests"] or None
    figures.rate_limited = sum(stats["excess_over_level"].values())
    # A LINK request names its destinations and messages; a Meta send is one message to
    # one person.
    sizes = [len(body.get("destinations", (1,))) for body in recorded]
    figures.requests = len(recorded)
    figures.messages = sum(
        len(body.get("destinations", (1,))) * len(body.get("messages", (1,))) for body in recorded
    )
    if sizes:
        figures.per_request = (min(sizes), sum(sizes) / len(sizes), max(sizes))
    if seconds:
        figures.max_second = max(seconds.values())
        figures.seconds_over = sum(1 for n in seconds.values() if n > figures.level)
    if not receipts:
        return
    receipts = sorted((float(at), int(n)) for at, n in receipts)
    first, last = receipts[0][0], receipts[-1][0]
    figures.period = last - first
    # Over the sending period: every message but the last request's, between the first
    # receipt and the last (n messages over the n - 1 gaps' worth of time).
    sent = sum(n for _, n in receipts) - receipts[-1][1]
    figures.achieved = sent / figures.period if figures.period > 0 else float(sent)
    ends: list[float] = []
    figures.max_window, figures.windows_over = sliding(receipts, figures.level, ends)
    long_stalls = [  # those within the sending period
        (float(end), float(length)) for end, length in stalls
        if float(length) > STALL_MARGIN_SECONDS and first <= float(end) and end - length <= last
    ]  # fmt: skip
    figures.stalls = len(long_stalls)
    figures.longest_stall = max((length for _, length in long_stalls), default=0.0)
    figures.windows_at_stalls = sum(1 for end in ends if begins_at_stall(end - 1.0, long_stalls))


#: The limiter's margin for the way to the provider (the rest is what a request may
#: spend late on our side: ``LATE_SHARE`` of it, and the timer slack a request that
#: had no need to sleep does not take): a stall of the simulator's loop within it
#: cannot push a window over, one past it can.
STALL_MARGIN_SECONDS = JITTER_MARGIN_SECONDS * (1 - LATE_SHARE) - TIMER_SLACK_SECONDS
#: Requests that came during a stall are read (and stamped) as it ends and within this
#: after, while the loop works through what came meanwhile.
STAMPED_AFTER_STALL_SECONDS = 0.010


def begins_at_stall(start: float, stalls: list[tuple[float, float]]) -> bool:
    """Whether a window beginning at ``start`` begins in a stall of the simulator's loop
    (or as it ends): the requests at its start may have arrived before it, unread."""
    return any(end - length <= start <= end + STAMPED_AFTER_STALL_SECONDS for end, length in stalls)


def sliding(
    receipts: list[tuple[float, int]], level: int, over_ends: list[float] | None = None
) -> tuple[int, int]:
    """The most messages in any 1-second window (t - 1, t], and how many windows ending
    at a receipt exceed ``level`` (their ends appended to ``over_ends``)."""
    best = over = total = start = 0
    for at, count in receipts:
        total += count
        while receipts[start][0] <= at - 1.0:
            total -= receipts[start][1]
            start += 1
        best = max(best, total)
        if total > level:
            over += 1
            if over_ends is not None:
                over_ends.append(at)
    return best, over


def report(f: Figures) -> None:
    low, mean, high = f.per_request
    lines = [
        f"people accepted:            {f.accepted:,} of {f.people:,}"
        + (f" ({f.twice:,} sent more than once)" if f.twice else ""),
        f"requests:                   {f.requests:,}, destinations per request "
        f"{low}..{high} (mean {mean:.1f}); messages {f.messages:,}",
        f"sending period:             {f.period:.2f} s (first to last receipt)",
        f"achieved:                   {f.achieved:,.1f} msg/s = {f.share:.1%} of {f.level} "
        "over the sending period",
        f"max messages in 1 s:        {f.max_window:,} in any sliding window "
        f"({f.max_second:,} in a calendar second)",
        f"windows over the level:     {f.windows_over} sliding, {f.seconds_over} calendar"
        + (
            f" ({f.windows_at_stalls} of them begin in a stall of the simulator's own loop)"
            if f.windows_over
            else ""
        ),
        f"simulator loop stalls:      {f.stalls} over {STALL_MARGIN_SECONDS * 1000:.0f} ms (the "
        "limiter's margin for the way to the provider), "
        f"longest {f.longest_stall * 1000:.0f} ms (requests read late: their receipts bunch)",
        f"130429 failures:            {f.rate_limited:,} (simulator enforces the level)",
    ]
    if f.cpu and f.messages:
        lines += cpu_lines(f)
    factor = "n/a" if f.factor is None else f"{f.factor:.2f}"
    lines.append(
        f"context (not the simulator): load average {f.load:.1f} on {os.cpu_count()} cores "
        f"before queueing; limiter rate factor after sending {factor}"
    )
    lines.append(f"simulator scheduled:        {f.simulator_scheduling or 'as is'}")
    if f.rejected:
        lines.append(f"requests refused:           {f.rejected}")
    if f.note:
        lines.append(f"note:                       {f.note}")
    print("\n".join(lines), flush=True)


PRODUCT = ("workers", "beat", "webhook app", "PostgreSQL", "Redis")
WHEN = ("before", "after")  # the yardsticks of a run (``Figures.yardsticks``)


def per_message_ms(f: Figures, kinds: tuple[str, ...] = PRODUCT) -> float:
    """CPU ms per message of these process kinds, scaled to the reference yardstick."""
    seconds = sum(f.cpu.get(kind, 0.0) for kind in kinds)
    return cpu.at_yardstick(seconds * 1000 / f.messages, f.yardstick) if f.messages else 0.0


def cpu_lines(f: Figures) -> list[str]:
    scale = cpu.REFERENCE_YARDSTICK_US / f.yardstick

    def ms(seconds: float, count: int) -> str:
        value = seconds * 1000 / max(1, count)
        return f"{value:.3f} ({value * scale:.3f})"

    c = f.cpu
    measured = ", ".join(f"{y:.0f} {when}" for y, when in zip(f.yardsticks, WHEN, strict=False))
    return [
        f"CPU ms, user+sys by process tree; yardstick {f.yardstick:.0f} us "
        f"({measured}; "
        f"in brackets: at {cpu.REFERENCE_YARDSTICK_US:.0f} us):",
        f"  workers      {ms(c['workers'], f.messages)} a message, "
        f"{ms(c['workers'], f.requests)} a request; beat {ms(c['beat'], f.messages)}",
        f"  webhook app  {ms(c['webhook app'], f.messages)} a message, "
        f"{ms(c['webhook app'], f.callbacks)} a callback ({f.callbacks:,} taken)",
        f"  PostgreSQL   {ms(c['PostgreSQL'], f.messages)} a message; "
        f"Redis {ms(c['Redis'], f.messages)}",
        *task_lines(f, ms),
        f"  dispatcher in all {ms(sum(c[k] for k in PRODUCT), f.messages)} a message; "
        f"simulator (the provider's stand-in, not the product) {ms(c['simulator'], f.messages)}",
        f"peak RSS of a worker:       {f.rss_mb:.0f} MB",
    ]


#: The send path's tasks (a chunk, and a batch sent alone: retries), and preparation's.
SEND_TASKS, PREPARE_TASK = ("send_batches", "send_batch"), "prepare_campaign"


def task_lines(f: Figures, ms: Callable[[float, int], str]) -> list[str]:
    """The workers' CPU split by task (each task's own thread): the send path a
    request, preparation a person, the rest."""
    if not f.tasks:
        return []
    send, sends = spent(f, SEND_TASKS)
    prepare = spent(f, (PREPARE_TASK,))[0]
    rest = sum(seconds for task, (seconds, _) in f.tasks.items()
               if task not in (*SEND_TASKS, PREPARE_TASK))  # fmt: skip
    return [
        f"    of which, by task (the task's own thread): sending {ms(send, f.requests)} a "
        f"request ({sends:,} send tasks), preparation {ms(prepare, f.people)} a person, "
        f"other tasks {rest:.2f} s in all"
    ]


def spent(f: Figures, tasks: tuple[str, ...]) -> tuple[float, int]:
    """These tasks' CPU seconds and runs together."""
    counted = [f.tasks.get(task, (0.0, 0)) for task in tasks]
    return sum(seconds for seconds, _ in counted), sum(runs for _, runs in counted)


def send_path_ms(f: Figures) -> float:
    """The send tasks' own CPU ms a request, scaled to the reference yardstick."""
    seconds = spent(f, SEND_TASKS)[0]
    return cpu.at_yardstick(seconds * 1000 / f.requests, f.yardstick) if f.requests else 0.0


def table(results: list[Figures]) -> None:
    header = (
        f"{'scenario':<27} {'run':<6} {'people':>15} {'period s':>8} {'msg/s':>8} "
        f"{'% level':>8} {'max 1s':>7} {'over':>6} {'130429':>7} {'ms/msg':>7} {'sim':>6} "
        f"{'send/req':>8}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for f in results:
        print(
            f"{f.scenario:<27} {f.variant:<6} {f'{f.accepted:,}/{f.people:,}':>15} "
            f"{f.period:>8.1f} {f.achieved:>8,.1f} {f.share:>8.1%} {f.max_window:>7,} "
            f"{f.windows_over:>6} {f.rate_limited:>7,} {per_message_ms(f):>7.3f} "
            f"{per_message_ms(f, ('simulator',)):>6.3f} {send_path_ms(f):>8.3f}"
            + (f"  ({f.note.split(';')[0]})" if f.note else "")
        )
    print(
        "max 1s / over: the busiest sliding 1-second window of the simulator's receipt log, "
        "and how many windows went over the level; ms/msg: the dispatcher's CPU a message "
        f"(workers, beat, webhook app, PostgreSQL, Redis) at a yardstick of "
        f"{cpu.REFERENCE_YARDSTICK_US:.0f} us; sim: the simulator's; send/req: the send "
        "tasks' own CPU ms a request (the workers' send path, without preparation and the "
        "periodic tasks)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--scenario",
        help=f"comma-separated, of: {', '.join(SCENARIOS)} (default: all; with "
        "--provider meta the personalised ones)",
    )
    parser.add_argument(
        "--provider",
        choices=("link", "meta"),
        default="link",
        help="send through LINK (default) or Meta's Cloud API (one person a request)",
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every people count")
    parser.add_argument("--naive", action="store_true", help="also run Celery's rate_limit")
    parser.add_argument("--workers", type=int, default=4, help="Celery worker processes")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=1,
        help="task threads per worker process (1: one task at a time, as a prefork child)",
    )
    parser.add_argument("--delay-ms", type=int, default=50, help="simulator response latency")
    parser.add_argument(
        "--timeout", type=float, default=0.0, help="seconds per run (default: 5x the ideal + 60)"
    )
    parser.add_argument(
        "--stall", type=float, default=60.0, help="stop waiting after this long without a send"
    )
    parser.add_argument("--keep-logs", action="store_true", help="print the processes' logs")
    parser.add_argument(
        "--save-receipts",
        type=Path,
        help="folder to write each run's receipt log and the simulator's stalls to (JSON)",
    )
    parser.add_argument(
        "--callbacks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the simulator posts every delivery report (about three a message) to the "
        "webhook app, as LINK does in production (--no-callbacks: the send path alone, "
        "not the product's figure)",
    )
    args = parser.parse_args()
    default = [n for n, s in SCENARIOS.items() if s.personalised or args.provider == "link"]
    names = [n.strip() for n in (args.scenario or ",".join(default)).split(",") if n.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    # A plain kill stops the benchmark through its cleanup, like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"stopped by signal {signal.SIGTERM}"))
    results = []
    for name in names:
        scenario = SCENARIOS[name]
        if args.provider == "meta":  # one person a request: batch_size does not apply
            scenario = replace(scenario, name=f"meta:{name}", batch_size=None, provider="meta")
        people = max(1, round(scenario.people * args.scale))
        results.append(run(scenario, people, naive=False, args=args))
        if args.naive:
            results.append(run(scenario, people, naive=True, args=args))
    table(results)


if __name__ == "__main__":
    main()
