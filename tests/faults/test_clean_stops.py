"""Clean stops: every long-running process ends within seconds on SIGTERM or SIGINT,
alone or with its whole process group, under load, leaves no process behind, and
loses nothing.

Each process runs in a session of its own (``start_new_session``), so a signal to its
group reaches its children and never pytest; what is left of a session afterwards is
read from ``/proc``. The three ways a stop arrives: SIGTERM to the process (``docker
stop``, systemd's ``KillMode=mixed``), SIGTERM to its group (``timeout``, systemd's
default ``KillMode=control-group``), SIGINT to its group (Ctrl+C in a terminal).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import Engine, create_engine, func, select

from dispatcher.db import Batch, DeliveryReport
from tests.conftest import FAULT_RUNS, ROOT, dispatcher_command, free_port, wait_http
from tests.e2e.conftest import clean_env
from tests.faults.conftest import SPEC, TOKEN, FaultStack, assert_nothing_lost, numbers

pytestmark = [pytest.mark.e2e, pytest.mark.integration, pytest.mark.faults]

#: The issue's limit for every process and every way.
STOP_LIMIT_SECONDS = 10.0
#: People of the campaign the stops interrupt: at STANDARD (80 a second) it sends for
#: about 15 s, long enough for three rounds of stops and restarts mid-campaign.
PEOPLE = 1200
STANDARD_SPEC = SPEC.replace("level: HIGH, ceiling_percent: 20", "level: STANDARD")


@dataclass(frozen=True)
class Way:
    name: str
    signal: signal.Signals
    group: bool

    def send(self, process: subprocess.Popen[bytes]) -> None:
        if self.group:
            os.killpg(process.pid, self.signal)
        else:
            process.send_signal(self.signal)


WAYS = (
    Way("SIGTERM to the process", signal.SIGTERM, group=False),
    Way("SIGTERM to its group", signal.SIGTERM, group=True),
    Way("SIGINT to its group", signal.SIGINT, group=True),
)


def left_in_session(session: int) -> list[str]:
    """The live processes of a session (a zombie has ended: its parent, or init, only
    has to collect its exit status)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (name) "
        state, sid = fields[0], int(fields[3])
        if sid == session and state != "Z":
            found.append(stat[: stat.rindex(")") + 1])
    return found


def wait_stopped(
    processes: dict[str, subprocess.Popen[bytes]], started: float, sessions: tuple[int, ...] = ()
) -> dict[str, float]:
    """Seconds from ``started`` until each process had ended; fails past the limit, or
    when anything of their sessions (or of ``sessions``) is still alive a second later."""
    took: dict[str, float] = {}
    while len(took) < len(processes):
        for name, process in processes.items():
            if name not in took and process.poll() is not None:
                took[name] = time.monotonic() - started
        if time.monotonic() - started > STOP_LIMIT_SECONDS:
            for process in processes.values():
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(timeout=10)
            late = sorted(set(processes) - set(took))
            pytest.fail(f"{late} still running {STOP_LIMIT_SECONDS:.0f} s after the signal")
        time.sleep(0.02)
    deadline = time.monotonic() + 1
    groups = (*(p.pid for p in processes.values()), *sessions)
    while left := [p for s in groups for p in left_in_session(s)]:
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(0.05)
    return took


def test_serve_workers_and_beat_stop_within_seconds_mid_campaign_and_lose_nothing(
    fault_stack: FaultStack,
) -> None:
    """Three rounds mid-campaign, one per way: the webhook app (callbacks flowing), both
    workers (sending) and beat stop together, as a host's restart stops them, then start
    again. No task waits for the visibility timeout; every callback answered 200 is
    stored; nobody is sent twice; everybody is sent once."""
    fault_stack.start()
    campaign_id = fault_stack.launch(PEOPLE, STANDARD_SPEC)
    healthz = f"http://127.0.0.1:{fault_stack.webhook_port}/healthz"
    broker = redis.Redis.from_url(fault_stack.redis.url)
    timings: dict[str, list[float]] = {}
    for round_, way in enumerate(WAYS):
        fault_stack.wait_accepted(PEOPLE * (3 + 5 * round_) // 20)
        names = ("webhook", "worker0", "worker1", "beat")
        processes = {name: fault_stack.processes.pop(name) for name in names}
        started = time.monotonic()
        for process in processes.values():
            way.send(process)
        if way.signal == signal.SIGTERM:  # the webhook app drains: its health says so
            assert stopping_seen(healthz), "/healthz never answered 503 stopping"
        for name, took in wait_stopped(processes, started).items():
            timings.setdefault(name, []).append(took)
        # Tasks received and not started went back as the connections closed, and the
        # tasks in flight ended: nothing waits for the visibility timeout.
        assert broker.hlen("unacked") == 0 and broker.zcard("unacked_index") == 0
        fault_stack.start_webhook()
        fault_stack.start_worker(0)
        fault_stack.start_worker(1)
        fault_stack.start_beat()
    fault_stack.wait_finished(campaign_id)
    broker.close()
    FAULT_RUNS.append(
        "clean stops, seconds per "
        + "/".join(w.name for w in WAYS)
        + ": "
        + "; ".join(f"{name} {'/'.join(f'{t:.1f}' for t in ts)}" for name, ts in timings.items())
    )
    assert_nothing_lost(
        fault_stack.verdict(campaign_id, people=PEOPLE), "clean stops x3 (serve, workers, beat)"
    )


def test_serve_stops_within_seconds_when_a_group_sigterm_ends_its_waiting_applier(
    fault_stack: FaultStack,
) -> None:
    """Between callbacks the applier process sleeps, waiting for the next: a SIGTERM to
    the group ended it there, and its parent, waking it to stop, waited for ever. (The
    other ways are the test above's.) What was answered 200 is stored."""
    way = WAYS[1]
    fault_stack.start_webhook()
    body = (ROOT / "tests" / "data" / "webhooks" / "dlr_delivered.json").read_bytes()
    url = f"http://127.0.0.1:{fault_stack.webhook_port}/webhooks/link/dlr?token={TOKEN}"
    assert httpx.post(url, content=body, timeout=10).status_code == 200
    engine = create_engine(fault_stack.database_url)
    deadline = time.monotonic() + 30
    while report_states(engine) == ["received"]:
        assert time.monotonic() < deadline, "the applier never took the report"
        time.sleep(0.1)
    time.sleep(0.5)  # applied: the applier sleeps, waiting for the next
    process = fault_stack.processes.pop("webhook")
    started = time.monotonic()
    way.send(process)
    took = wait_stopped({"serve": process}, started)["serve"]
    assert len(report_states(engine)) == 1
    engine.dispose()
    FAULT_RUNS.append(f"clean stops: serve, applier waiting, {way.name}: {took:.1f} s")


def report_states(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(connection.scalars(select(DeliveryReport.state)))


def stopping_seen(url: str, within_seconds: float = 1.5) -> bool:
    deadline = time.monotonic() + within_seconds
    while time.monotonic() < deadline:
        try:
            answer = httpx.get(url, timeout=1)
        except httpx.HTTPError:
            return False  # closed already: the drain is over
        if answer.status_code == 503 and answer.json() == {"status": "stopping"}:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture()
def simulator(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``dispatcher simulate`` taking requests, its callbacks due to a receiver that is
    down (so they stay pending, retried)."""
    port, nowhere = free_port(), free_port()
    env = clean_env() | {
        "SIMULATOR_USERNAME": "u",
        "SIMULATOR_PASSWORD": "p",
        "SIMULATOR_PLATFORM_ID": "P",
        "SIMULATOR_PLATFORM_PARTNER_ID": "1",
        "SIMULATOR_DLR_DELAY_MS": "0",
    }
    gate = f"g=http://127.0.0.1:{nowhere}/webhooks/link/dlr"
    with (tmp_path / "simulator.log").open("wb") as log:
        process = subprocess.Popen(
            dispatcher_command("simulate", "--port", str(port), "--gate", gate),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", process=process)
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.mark.parametrize("way", WAYS, ids=lambda way: way.name.replace(" ", "-"))
def test_the_simulator_stops_within_seconds_while_taking_requests(
    way: Way, simulator: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, url = simulator
    body = {
        "platformId": "P", "platformPartnerId": "1", "source": "+4790000000",
        "destinations": numbers(1), "refId": "r", "priority": "NORMAL", "eventReportGates": ["g"],
        "messages": [{"type": "text", "text": {"body": "hi"}}],
    }  # fmt: skip
    sent = threading.Event()
    done = threading.Event()

    def load() -> None:
        with httpx.Client(auth=("u", "p"), timeout=2) as client:
            while not done.is_set():
                try:
                    if client.post(f"{url}/messages", content=json.dumps(body)).is_success:
                        sent.set()
                except httpx.HTTPError:
                    time.sleep(0.05)

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        assert sent.wait(10), "the simulator accepted no request"
        time.sleep(0.5)
        pending = httpx.get(f"{url}/_simulator/stats").json()["callbacks"]["pending"]
        assert pending > 0, "no callback waiting: the stop would not be under load"
        started = time.monotonic()
        way.send(process)
        took = wait_stopped({"simulate": process}, started)["simulate"]
    finally:
        done.set()
        for thread in threads:
            thread.join()
    FAULT_RUNS.append(f"clean stops: simulate, {way.name}: {took:.1f} s")


@pytest.mark.parametrize("way", WAYS, ids=lambda way: way.name.replace(" ", "-"))
def test_an_embedded_run_stops_its_whole_stack_within_seconds(way: Way, tmp_path: Path) -> None:
    """``dispatcher run`` without services, mid-campaign: Redis, the worker and its beat
    (each in a group of its own) end with it."""
    folder = tmp_path / "campaign"
    folder.mkdir()
    (folder / "campaign.yaml").write_text(STANDARD_SPEC)
    rows = "\n".join(f"{n},P{i}" for i, n in enumerate(numbers(PEOPLE)))
    (folder / "people.csv").write_text(f"phone,first_name\n{rows}\n")
    state = tmp_path / "state"
    env = {k: v for k, v in clean_env().items() if not k.endswith(("DATABASE_URL", "REDIS_URL"))}
    env |= {"DISPATCHER_STATE_DIR": str(state), "WEBHOOK_TOKEN": TOKEN}
    with (tmp_path / "run.log").open("wb") as log:
        process = subprocess.Popen(
            dispatcher_command("run", str(folder)),
            env=env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    pids: dict[str, int] = {}
    try:
        pids = wait_sending(state, process)
        started = time.monotonic()
        way.send(process)
        sessions = (pids["redis"], pids["worker"])
        took = wait_stopped({"run": process}, started, sessions)["run"]
    finally:
        for session in (process.pid, *pids.values()):
            if left_in_session(session):
                os.killpg(session, signal.SIGKILL)
    assert not (state / "embedded.pids").exists()
    FAULT_RUNS.append(f"clean stops: dispatcher run (embedded), {way.name}: {took:.1f} s")


def wait_sending(state: Path, process: subprocess.Popen[bytes]) -> dict[str, int]:
    """The pids of the embedded Redis and worker, once the worker has sent a while."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, (state.parent / "run.log").read_text()[-2000:]
        pids_file = state / "embedded.pids"
        if pids_file.exists() and sending(state):
            pids: dict[str, int] = json.loads(pids_file.read_text())
            time.sleep(1)
            return pids
        time.sleep(0.2)
    pytest.fail("the embedded run never started sending")


def sending(state: Path) -> bool:
    engine = create_engine(f"sqlite:///{state / 'dispatcher.db'}")
    try:
        with engine.connect() as connection:
            sent = connection.scalar(
                select(func.count()).select_from(Batch).where(Batch.state == "submitted")
            )
    except Exception:  # not migrated yet
        return False
    finally:
        engine.dispose()
    return bool(sent)
