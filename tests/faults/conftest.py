"""A whole production stack on loopback, built to be broken.

Each fault test gets its own Redis (append-only file on, as the README recommends) and
its own PostgreSQL database, two prefork Celery workers, a separate beat, the webhook
app and the simulator. The windows that are minutes in production are seconds here
(visibility timeout, stale claim, resend floor, request timeout), in the same order.

The verdict is read from the simulator's own books: who it accepted and how often, and
which callbacks a receiver took; then from the database: every message's status and
every stored callback body.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import create_engine, select

from dispatcher.db import Campaign, DeliveryReport, Message, migrate
from dispatcher.status import SETTLED, CampaignState
from tests.conftest import FAULT_RUNS, dispatcher_command, free_port, through, wait_http
from tests.e2e.conftest import stack_env

#: People per fault run: a few thousand, sent one request each (personalised), so every
#: fault meets hundreds of requests.
PEOPLE = 2000
TOKEN = "fault-token"
PG_BIN = Path("/usr/lib/postgresql")

SPEC = """\
name: Fault run
sender: {source: "+4790000000", level: HIGH, ceiling_percent: 20}
template_category: marketing
message:
  type: template
  template:
    name: hello
    language: en
    components: [{type: body, parameters: [{type: text, text: "{first_name}"}]}]
recipients: people.csv
"""


def numbers(count: int) -> list[str]:
    return [f"+479{n:07d}" for n in range(1000001, 1000001 + count)]


class RedisServer:
    """A private redis-server with the append-only file on; ``restart`` kills it hard."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.folder), "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        with (self.folder / "redis.log").open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                if client.ping():
                    break
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def restart(self, down_seconds: float) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()


class PostgresServer:
    """A private PostgreSQL cluster (as the ``postgres`` user), to be stopped and started
    without touching the machine's shared one."""

    def __init__(self) -> None:
        versions = sorted(PG_BIN.iterdir()) if PG_BIN.exists() else []
        if not versions:  # pragma: no cover - environment problem, made loud
            pytest.fail("no PostgreSQL server binaries under /usr/lib/postgresql")
        self.bin = versions[-1] / "bin"
        self.folder = Path(tempfile.mkdtemp(prefix="dispatcher-pg-"))
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _as_postgres(self, *command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            capture_output=True,
            timeout=120,
        )

    def init(self) -> None:
        shutil.chown(self.folder, "postgres", "postgres")
        data = self.folder / "data"
        self._as_postgres(
            str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"
        )
        self.start()

    def start(self) -> None:
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-w", "-l",
            str(self.folder / "server.log"), "-o",
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip

    def stop(self) -> None:
        """An immediate stop: no checkpoint, clients cut off, as in a crash."""
        self._as_postgres(
            str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "immediate", "stop"
        )

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@dataclass
class Verdict:
    """What the simulator and the database say about one fault run."""

    people: int
    accepted_once: int
    double_sends: list[str]
    not_sent_with_reason: int
    lost: list[str]
    misreported: list[str]
    unsettled: int
    callbacks_taken: int
    callbacks_missing: int
    faults: dict[str, int] = field(default_factory=dict)
    provider: str = "link"

    def line(self, name: str) -> str:
        return (
            f"{name} ({self.provider}): faults {self.faults}; people {self.people}; "
            f"accepted once {self.accepted_once}; double sends {len(self.double_sends)}; "
            f"not sent, with reason {self.not_sent_with_reason}; lost {len(self.lost)}; "
            f"sent but reported otherwise {len(self.misreported)}; "
            f"unsettled {self.unsettled}; callbacks taken {self.callbacks_taken}, "
            f"missing from the raw store {self.callbacks_missing}"
        )


class FaultStack:
    """The processes of one fault run, with the means to break them."""

    def __init__(
        self, folder: Path, redis_server: RedisServer, database_url: str, provider: str = "link"
    ) -> None:
        self.folder = folder
        self.provider = provider  # the campaigns ``launch`` writes send through it
        self.redis = redis_server
        self.database_url = database_url
        self.logs = folder / "logs"
        self.logs.mkdir()
        self.webhook_port = free_port()
        self.simulator_port = free_port()
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        webhooks_url = f"http://127.0.0.1:{self.webhook_port}"
        self.env = stack_env(
            database_url, redis_server.url, self.simulator_url, folder, TOKEN, webhooks_url
        ) | {
            "LINK_TIMEOUT_SECONDS": "1",
            "META_TIMEOUT_SECONDS": "1",
            # Production's minutes, as seconds, in the same order: a task outlives its
            # visibility only when its worker is gone; a claim goes stale well after any
            # request's timeout; a resend waits well past any report's lateness.
            "BROKER_VISIBILITY_TIMEOUT": "20",
            "STALE_SUBMITTING_SECONDS": "10",
            "RESEND_MIN_DELAY_SECONDS": "25",
            "SIMULATOR_LEVEL": "HIGH",
            "SIMULATOR_SEED": "7",
            "SIMULATOR_RECORD_REQUESTS": "1",
            "SIMULATOR_CALLBACK_MAX_ATTEMPTS": "60",
            "SIMULATOR_CALLBACK_BACKOFF_MS": "200",
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._serial = 0

    def use_database(self, url: str) -> None:
        """Run on another database (before ``start``)."""
        migrate(url)
        self.database_url = url
        self.env["DATABASE_URL"] = url

    # -- processes ----------------------------------------------------------------------

    def _start(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        self._serial += 1
        log_path = self.logs / f"{self._serial:02d}-{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a kill takes its children
            )
        self.processes[name] = process
        return process

    def start(self, simulator_env: dict[str, str] | None = None, workers: int = 2) -> None:
        self.env |= simulator_env or {}
        self.start_webhook()
        gate = f"e2e-gate=http://127.0.0.1:{self.webhook_port}/webhooks/link/dlr?token={TOKEN}"
        simulator = self._start(
            "simulator",
            dispatcher_command("simulate", "--port", str(self.simulator_port), "--gate", gate),
        )
        wait_http(f"{self.simulator_url}/healthz", process=simulator)
        for index in range(workers):
            self.start_worker(index)
        self.start_beat()

    def start_beat(self) -> None:
        self._start(
            "beat",
            [
                sys.executable, "-m", "celery", "-A", "workers", "beat",
                "--schedule", str(self.folder / "beat-schedule"), "--loglevel", "WARNING",
            ],
        )  # fmt: skip

    def start_webhook(self) -> None:
        webhook = self._start(
            "webhook",
            dispatcher_command(
                "serve", "--port", str(self.webhook_port), "--internal-port", str(free_port())
            ),
        )
        wait_http(f"http://127.0.0.1:{self.webhook_port}/healthz", process=webhook)

    def stop_webhook(self) -> None:
        self._kill("webhook")

    def start_worker(self, index: int) -> None:
        self._start(
            f"worker{index}",
            [
                sys.executable, "-m", "celery", "-A", "workers", "worker",
                "--pool", "prefork", "--concurrency", "2",
                "--queues", "prepare,send,dlr", "--hostname", f"fault{index}@%h",
                "--loglevel", "INFO", "--without-gossip", "--without-mingle",
            ],
        )  # fmt: skip

    def kill_worker(self, index: int) -> None:
        """``kill -9`` of the worker and its pool children (a container killed)."""
        self._kill(f"worker{index}")

    def kill_pool_children(self, index: int) -> int:
        """``kill -9`` of the worker's pool children (mid-campaign, both are busy); the
        parent replaces them. Returns how many were killed."""
        parent = self.processes[f"worker{index}"].pid
        children = subprocess.run(
            ["pgrep", "-P", str(parent)], capture_output=True, text=True
        ).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGKILL)
        return len(children)

    def _kill(self, name: str) -> None:
        process = self.processes.pop(name)
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)

    def stop(self) -> None:
        processes = list(self.processes.values())
        self.processes.clear()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        for log in sorted(self.logs.iterdir()):
            tail = log.read_text(errors="replace")[-2500:]
            print(f"----- {log.name}\n{tail}")

    # -- the campaign ---------------------------------------------------------------------

    def launch(self, people: int = PEOPLE, spec: str = SPEC) -> int:
        folder = self.folder / "campaign"
        folder.mkdir()
        (folder / "campaign.yaml").write_text(through(self.provider, spec))
        rows = "\n".join(f"{n},P{i}" for i, n in enumerate(numbers(people)))
        (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
        done = subprocess.run(
            dispatcher_command("run", str(folder), "--detach"),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        found = re.search(r"Campaign (\d+) queued", done.stdout)
        assert found, done.stdout + done.stderr
        return int(found.group(1))

    def stats(self) -> dict[str, object]:
        answer: dict[str, object] = httpx.get(f"{self.simulator_url}/_simulator/stats").json()
        return answer

    def accepted(self) -> int:
        destinations = self.stats()["destinations"]
        assert isinstance(destinations, dict)
        return len(destinations)

    def wait_accepted(self, count: int, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while self.accepted() < count:
            assert time.monotonic() < deadline, f"fewer than {count} people reached LINK"
            time.sleep(0.1)

    def wait_finished(self, campaign_id: int, timeout: float = 240) -> None:
        """Until the campaign is completed and the simulator has no callback left to
        deliver (the last ones may land after completion)."""
        engine = create_engine(self.database_url)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    with engine.connect() as connection:
                        state = connection.scalar(
                            select(Campaign.state).where(Campaign.id == campaign_id)
                        )
                    callbacks = self.stats()["callbacks"]
                    assert isinstance(callbacks, dict)
                    if state == CampaignState.COMPLETED and callbacks["pending"] == 0:
                        return
                except Exception:  # the database or the simulator is being broken
                    state = "unreachable"
                assert time.monotonic() < deadline, f"campaign still {state} after {timeout}s"
                time.sleep(0.5)
        finally:
            engine.dispose()

    def wait_idle(self, timeout: float = 60) -> None:
        """Until no task waits in the broker or runs unacknowledged, twice in a row."""
        client = redis.Redis.from_url(self.redis.url)
        deadline = time.monotonic() + timeout
        quiet = 0
        try:
            while quiet < 2:
                queues = [k for k in client.keys("*") if k.startswith((b"send", b"prepare"))]
                busy = sum(client.llen(k) for k in queues) + client.zcard("unacked_index")
                quiet = quiet + 1 if busy == 0 else 0
                assert time.monotonic() < deadline, f"{busy} tasks still queued or running"
                time.sleep(0.5)
        finally:
            client.close()

    def verdict(self, campaign_id: int, people: int = PEOPLE) -> Verdict:
        stats = self.stats()
        destinations = stats["destinations"]
        assert isinstance(destinations, dict)
        taken = httpx.get(f"{self.simulator_url}/_simulator/callbacks", timeout=30).json()
        engine = create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    select(Message.destination, Message.status, Message.result_description).where(
                        Message.campaign_id == campaign_id
                    )
                ).all()
                stored = {
                    bytes(body)
                    for (body,) in connection.execute(
                        select(DeliveryReport.body).where(DeliveryReport.kind.in_(("dlr", "meta")))
                    )
                }
        finally:
            engine.dispose()
        status_of = {row.destination: row for row in rows}
        double = sorted(n for n, count in destinations.items() if count > 1)
        lost, misreported, reported = [], [], 0
        for number in numbers(people):
            sends = destinations.get(number, 0)
            row = status_of.get(number)
            if sends == 1:
                # Taken once, and the simulator reads everything it takes: the report
                # must say so (not "failed" or "cancelled" for someone who got it).
                if row is None or row.status not in ("delivered", "read"):
                    misreported.append(number)
                continue
            if sends == 0 and row is not None and row.status in SETTLED and row.result_description:
                reported += 1  # never sent, and the report says why
            elif sends == 0:
                lost.append(number)
        missing = [body for body in taken if body.encode() not in stored]
        faults = stats.get("faults") or {}
        rejected = stats.get("rejected_requests") or {}
        assert isinstance(faults, dict) and isinstance(rejected, dict)
        return Verdict(
            people=people,
            accepted_once=sum(1 for n in numbers(people) if destinations.get(n) == 1),
            double_sends=double,
            not_sent_with_reason=reported,
            lost=lost,
            misreported=misreported,
            unsettled=sum(1 for row in rows if row.status not in SETTLED),
            callbacks_taken=len(taken),
            callbacks_missing=len(missing),
            faults={**faults, **{f"http {code}": n for code, n in rejected.items()}},
            provider=self.provider,
        )


def assert_nothing_lost(verdict: Verdict, name: str) -> None:
    """Nobody sent twice, nobody lost, judged from the simulator's books."""
    FAULT_RUNS.append(verdict.line(name))
    assert verdict.double_sends == [], f"sent twice: {verdict.double_sends[:5]}"
    assert verdict.lost == [], f"neither sent nor reported: {verdict.lost[:5]}"
    assert verdict.misreported == [], f"sent, but not reported read: {verdict.misreported[:5]}"
    assert verdict.unsettled == 0, "messages without a final status"
    assert verdict.callbacks_missing == 0, "callbacks taken but not in the raw store"
    assert verdict.accepted_once + verdict.not_sent_with_reason == verdict.people


@pytest.fixture()
def fault_stack(own_pg_url: str, tmp_path: Path, provider: str) -> Iterator[FaultStack]:
    """Own Redis (AOF) and database; call ``start`` with any simulator faults; the
    campaigns it launches send through ``provider``."""
    migrate(own_pg_url)
    server = RedisServer(tmp_path)
    server.start()
    stack = FaultStack(tmp_path, server, own_pg_url, provider)
    try:
        yield stack
    finally:
        stack.stop()
        server.kill()


@pytest.fixture()
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    server.init()
    try:
        yield server
    finally:
        server.remove()
