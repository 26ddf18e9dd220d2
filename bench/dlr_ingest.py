"""How many LINK delivery callbacks per second the webhook app takes, as deployed.

Creates a throwaway PostgreSQL database (dropped afterwards), migrates it, inserts one
sending campaign with MESSAGES submitted messages (LINK ids set) in batches of 100, by
SQL, and starts ``dispatcher serve`` (uvicorn, its own process, with its applier child
process) on it. A load generator in a separate process then posts, for every message:

* sent (112006), delivered (112003), read (112007) -- or, for ~1 %, sent then failed
  (112403 with ``(#131049)`` in resultDescription, or 112404 alone);
* in reverse order for REVERSED of the messages, plus a second copy of DUPLICATES of
  all callbacks at a random later point; a message's statuses are spread ~MESSAGES/5
  callbacks apart;
* each with customParameters naming the MSISDN and a BSUID (identity learning).

The load generator is a raw HTTP/1.1 client on uvloop (pre-built requests, keep-alive,
CONNECTIONS at a time, closed loop; or open loop with --rate, latency then counted
from each request's scheduled time): nothing to install, and its own CPU is measured
and printed. Printed: callbacks sent and their answers, wall time, callbacks/s overall
and per 10 s, p50/p99/max response time, CPU of the load generator, the server, its
applier process, PostgreSQL and everything else on the machine (other work skews the
figures: the line shows how much), raw rows stored by state, how long the applier took
to catch up after the last answer, and the messages whose final status, WhatsApp
error code or stage times differ from what their callbacks say.

    .venv/bin/python bench/dlr_ingest.py [--messages 100000] [--connections 48]
        [--rate 0] [--reversed 0.10] [--duplicates 0.02] [--keep-log]
        [--profile FILE  (py-spy, `pip install py-spy`: collapsed stacks, with --gil)]

PostgreSQL admin URL: BENCH_POSTGRES_URL (default postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TOKEN = "bench-token"
SENT, DELIVERED, READ, FAILED, INVALID_CONTACT = 112006, 112003, 112007, 112403, 112404
BATCH_SIZE = 100


# -- the callbacks ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Expected:
    status: str
    whatsapp_error_code: int | None


def link_id(index: int) -> str:
    return f"bench{index:017d}"  # 22 characters, like LINK's


def msisdn(index: int) -> str:
    return f"+47{90_000_000 + index}"


def callbacks(
    messages: int, reversed_share: float, duplicates: float, seed: int = 7
) -> tuple[list[bytes], dict[int, Expected]]:
    """Every callback body, in sending order, and each message's expected outcome.

    The k-th status of message i is due at "time" i + k * spread (plus jitter), so a
    message's statuses are normally far apart in the stream, in order; the reversed
    messages get the same slots with their statuses swapped end for end.
    """
    rng = random.Random(seed)
    spread = max(messages // 5, 1)
    events: list[tuple[float, int, int]] = []
    expected: dict[int, Expected] = {}
    for index in range(1, messages + 1):
        roll = rng.random()
        if roll < 0.005:
            codes = [SENT, FAILED]
            expected[index] = Expected("failed", 131049)
        elif roll < 0.01:
            codes = [INVALID_CONTACT]
            expected[index] = Expected("failed", None)
        else:
            codes = [SENT, DELIVERED, READ]
            expected[index] = Expected("read", None)
        if rng.random() < reversed_share:
            codes.reverse()
        for step, code in enumerate(codes):
            events.append((index + step * spread + rng.random() * 50, index, code))
    for due, index, code in list(events):
        if rng.random() < duplicates:
            events.append((due + rng.uniform(1, spread / 2), index, code))
    events.sort()
    return [body(index, code) for _, index, code in events], expected


_DESCRIPTIONS = {
    SENT: "sent",
    DELIVERED: "delivered",
    READ: "read",
    FAILED: "(#131049) This message was not delivered to maintain healthy ecosystem engagement.",
    INVALID_CONTACT: "Invalid contact",
}
_STAMP_SECONDS = {SENT: 1, DELIVERED: 2, READ: 30, FAILED: 2, INVALID_CONTACT: 1}


def body(index: int, code: int) -> bytes:
    second = (index // 50 + _STAMP_SECONDS[code]) % 3600
    return json.dumps(
        {
            "messageId": link_id(index),
            "refId": f"bench-b{(index - 1) // BATCH_SIZE:06d}",
            "messageType": "MediaTemplateMessage",
            "messageIndex": 0,
            "timestamp": f"2026-05-04T1{second // 3600}:{second // 60 % 60:02d}:{second % 60:02d}Z",
            "resultCode": code,
            "resultDescription": _DESCRIPTIONS[code],
            "customParameters": {
                "pricingModel": "PMP",
                "pricingCategory": "marketing_lite",
                "platformPartnerId": "1",
                "waMessageId": f"wamid.HBgMMzU5ODgz{index:012d}FQIAERgSRDFEQzIyRDU0NUE4MzVC",
                "pricingBillable": "true",
                "platformId": "BENCH",
                "pricingType": "regular",
                "destination": msisdn(index),
                "whatsappUserId": f"NO.{index:020d}",
            },
        },
        separators=(",", ":"),
    ).encode()


# -- the database ---------------------------------------------------------------------------


def seed_messages(url: str, messages: int) -> None:
    """One sending campaign, its batches and messages, all submitted, by plain SQL."""
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        campaign_id = connection.execute(
            "INSERT INTO campaigns (name, spec, spec_path, source, state, loaded, rejected,"
            " duplicates, created_at) VALUES ('bench', '{}', '/dev/null', '+4790000000',"
            " 'sending', %s, 0, 0, now()) RETURNING id",
            (messages,),
        ).fetchone()[0]  # type: ignore[index]
        connection.execute(
            "INSERT INTO batches (id, campaign_id, seq, state, payload, size, attempts,"
            " created_at, submitted_at)"
            " SELECT 'bench-b' || lpad(b::text, 6, '0'), %s, b, 'submitted',"
            " '{\"messages\": []}', %s, 1, now(), now()"
            " FROM generate_series(0, %s) AS b",
            (campaign_id, BATCH_SIZE, (messages - 1) // BATCH_SIZE),
        )
        connection.execute(
            "INSERT INTO messages (campaign_id, identity_key, destination, source_line, params,"
            " batch_id, position, link_message_id, status, attempts, submitted_at, updated_at)"
            " SELECT %s, '+47' || (90000000 + i), '+47' || (90000000 + i),"
            " i + 1, '{}', 'bench-b' || lpad(((i - 1) / %s)::text, 6, '0'), (i - 1) %% %s,"
            " 'bench' || lpad(i::text, 17, '0'), 'submitted', 1, now(), now()"
            " FROM generate_series(1, %s) AS i",
            (campaign_id, BATCH_SIZE, BATCH_SIZE, messages),
        )
        connection.execute("ANALYZE")


def mismatches(url: str, expected: dict[int, Expected]) -> tuple[int, dict[str, int]]:
    import psycopg

    wrong = 0
    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        rows = connection.execute(
            "SELECT link_message_id, status, whatsapp_error_code, sent_at IS NOT NULL,"
            " delivered_at IS NOT NULL, read_at IS NOT NULL, failed_at IS NOT NULL"
            " FROM messages"
        ).fetchall()
        states = dict(
            connection.execute("SELECT state, count(*) FROM delivery_reports GROUP BY state")
        )
    for link, status, code, sent, delivered, read, failed in rows:
        want = expected[int(link[5:])]
        stamps_ok = (sent and delivered and read) if want.status == "read" else failed
        if (status, code) != (want.status, want.whatsapp_error_code) or not stamps_ok:
            wrong += 1
    return wrong + len(expected) - len(rows), states


def scalar(url: str, sql: str) -> int:
    import psycopg

    with psycopg.connect(url.replace("+psycopg", "")) as connection:
        return int(connection.execute(sql).fetchone()[0])  # type: ignore[index]


# -- CPU accounting ----------------------------------------------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def children_cpu(parent: int) -> float:
    """CPU seconds of the processes ``parent`` started (the applier)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == parent:
                total += (int(stat[11]) + int(stat[12])) / TICK
    return total


def postgres_cpu() -> dict[int, float]:
    """CPU seconds of every PostgreSQL process, by pid (a backend that starts later
    counts from zero)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "postgres":
                    found[int(entry.name)] = cpu_seconds(int(entry.name))
            except OSError:
                continue
    return found


def used(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICK, sum(values) / TICK


# -- the load generator (child process) ------------------------------------------------------


class _Connection(asyncio.Protocol):
    def __init__(self, load: _Load) -> None:
        self.load = load
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.index = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def next(self) -> None:
        index = self.load.take()
        if index is None:
            assert self.transport is not None
            self.transport.close()
            return
        self.index = index
        delay = self.load.due[index] - time.perf_counter() if self.load.paced else 0.0
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self.send)
        else:
            self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.load.started[self.index] = time.perf_counter()
        self.transport.write(self.load.requests[self.index])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        at = head.find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15 : stop if stop >= 0 else len(head)])
        if len(self.buffer) < end + 4 + length:
            return
        self.buffer = self.buffer[end + 4 + length :]
        now = time.perf_counter()
        since = self.load.due[self.index] if self.load.paced else self.load.started[self.index]
        self.load.latency[self.index] = now - since
        self.load.finished[self.index] = now
        self.load.status[self.index] = int(head[9:12])
        self.next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.load.closed += 1
        if self.index >= 0 and self.load.status[self.index] == 0:
            self.load.lost += 1
        if self.load.closed == self.load.connections:
            self.load.done.set_result(None)


class _Load:
    def __init__(self, requests: list[bytes], connections: int, rate: float) -> None:
        self.requests = requests
        self.connections = connections
        self.paced = rate > 0
        self.interval = 1 / rate if rate else 0.0
        self.due = array.array("d", bytes(8 * len(requests)))
        self.started = array.array("d", bytes(8 * len(requests)))
        self.latency = array.array("d", bytes(8 * len(requests)))
        self.finished = array.array("d", bytes(8 * len(requests)))
        self.status = array.array("H", bytes(2 * len(requests)))
        self.cursor = 0
        self.closed = self.lost = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def take(self) -> int | None:
        if self.cursor >= len(self.requests):
            return None
        self.cursor += 1
        return self.cursor - 1


async def _run_load(path: str, port: int, connections: int, rate: float) -> dict[str, object]:
    head = (
        f"POST /webhooks/link/dlr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"X-Webhook-Token: {TOKEN}\r\nContent-Type: application/json\r\n"
    ).encode()
    with open(path, "rb") as handle:
        requests = [
            head + b"Content-Length: %d\r\n\r\n" % len(line) + line
            for line in handle.read().split(b"\n")
            if line
        ]
    load = _Load(requests, connections, rate)
    loop = asyncio.get_running_loop()
    opened: list[_Connection] = []
    for _ in range(connections):  # every connection open before the clock starts
        _, protocol = await loop.create_connection(lambda: _Connection(load), "127.0.0.1", port)
        opened.append(protocol)
    cpu, started = time.process_time(), time.perf_counter()
    if load.paced:
        load.due = array.array("d", (started + i * load.interval for i in range(len(requests))))
    for connection in opened:
        connection.next()
    await load.done
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    answered = sorted(load.latency[i] for i in range(len(requests)) if load.status[i])
    # Paced: how late the generator itself sent each request (its own CPU starvation).
    lags = sorted(max(0.0, s - d) for s, d in zip(load.started, load.due, strict=True))
    statuses: dict[str, int] = {}
    for code in load.status:
        statuses[str(code)] = statuses.get(str(code), 0) + 1

    per_10s: list[int] = [0] * (int(wall // 10) + 1)
    latency_10s: list[list[float]] = [[] for _ in per_10s]
    for at, took in zip(load.finished, load.latency, strict=True):
        if at:
            per_10s[int((at - started) // 10)] += 1
            latency_10s[int((at - started) // 10)].append(took)
    p99_10s = [sorted(b)[int(0.99 * len(b))] * 1000 if b else 0.0 for b in latency_10s]

    def pct(share: float) -> float:
        return answered[min(len(answered) - 1, int(share * len(answered)))] * 1000

    return {
        "sent": len(requests),
        "statuses": statuses,
        "lost": load.lost,
        "wall": wall,
        "cpu": cpu,
        "p50": pct(0.50),
        "p99": pct(0.99),
        "max": answered[-1] * 1000,
        "send_lag_p99": lags[int(0.99 * len(lags))] * 1000 if load.paced else 0.0,
        "per_second_by_10s": [n // 10 for n in per_10s],
        "p99_by_10s": [round(v) for v in p99_10s],
    }


def load_main(path: str, port: int, connections: int, rate: float) -> None:
    import uvloop

    result = uvloop.run(_run_load(path, port, connections, rate))
    print(json.dumps(result))


# -- the attack (child process): slow clients and a flood of unauthenticated posts ------------


class _Slow(asyncio.Protocol):
    """Sends a request head a few bytes at a time and never finishes it (slowloris)."""

    def __init__(self, attack: _Attack) -> None:
        self.attack = attack
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(b"POST /webhooks/link/dlr HTTP/1.1\r\nHost: x\r\n")
        self.trickle()

    def trickle(self) -> None:
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(b"X-A: b\r\n")
            self.timer = asyncio.get_running_loop().call_later(2.0, self.trickle)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if not self.attack.stopping:
            self.attack.cut += 1  # the server cut it: come back, as an attacker would
            asyncio.get_running_loop().create_task(self.attack.open_slow())


class _Flood(asyncio.Protocol):
    """Posts forged reports without the token back to back, paced over all of them."""

    def __init__(self, attack: _Attack, request: bytes) -> None:
        self.attack = attack
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.send()

    def send(self) -> None:
        if self.attack.stopping or self.transport is None or self.transport.is_closing():
            return
        delay = self.attack.next_due() - time.perf_counter()
        if delay > 0:
            asyncio.get_running_loop().call_later(delay, self._write)
        else:
            self._write()

    def _write(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].lower()
            at = head.find(b"content-length:")
            length = int(
                head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else len(head)]
            )
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            status = head[9:12].decode()
            self.attack.answers[status] = self.attack.answers.get(status, 0) + 1
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.attack.stopping:
            self.attack.flood_reconnects += 1
            asyncio.get_running_loop().create_task(self.attack.open_flood(self.request))


class _Attack:
    def __init__(self, port: int, slow: int, rate: float) -> None:
        self.port = port
        self.slow = slow
        self.interval = 1 / rate if rate else 0.0
        self.due = time.perf_counter()
        self.stopping = False
        self.cut = self.flood_reconnects = self.source = 0
        self.answers: dict[str, int] = {}

    def next_due(self) -> float:
        self.due = max(self.due + self.interval, time.perf_counter() - 1.0)
        return self.due

    def _source(self) -> tuple[str, int]:
        # Spread over 50 loopback addresses: a flood from many callers, each with its
        # own per-address limit.
        self.source += 1
        return (f"127.0.1.{self.source % 50 + 1}", 0)

    async def open_slow(self) -> None:
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().create_connection(
                lambda: _Slow(self), "127.0.0.1", self.port, local_addr=self._source()
            )

    async def open_flood(self, request: bytes) -> None:
        with contextlib.suppress(OSError):
            await asyncio.get_running_loop().create_connection(
                lambda: _Flood(self, request), "127.0.0.1", self.port, local_addr=self._source()
            )


async def _run_attack(port: int, slow: int, rate: float) -> dict[str, object]:
    attack = _Attack(port, slow, rate)
    forged = body(1, DELIVERED)
    request = (
        f"POST /webhooks/link/dlr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(forged)}\r\n\r\n"
    ).encode() + forged
    for _ in range(slow):
        await attack.open_slow()
    if rate:
        for _ in range(16):
            await attack.open_flood(request)
    stop = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set_result, None)
    started, cpu = time.perf_counter(), time.process_time()
    await stop
    attack.stopping = True
    wall = time.perf_counter() - started
    return {
        "wall": wall,
        "cpu": time.process_time() - cpu,
        "flood_answers": attack.answers,
        "flood_per_second": sum(attack.answers.values()) / wall,
        "slow_cut": attack.cut,
        "flood_reconnects": attack.flood_reconnects,
    }


def attack_main(port: int, slow: int, rate: float) -> None:
    import uvloop

    result = uvloop.run(_run_attack(port, slow, rate))
    print(json.dumps(result), flush=True)


# -- the conductor -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(port: int, process: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"dispatcher serve exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("dispatcher serve did not come up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=48)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--reversed", type=float, default=0.10)
    parser.add_argument("--duplicates", type=float, default=0.02)
    parser.add_argument("--keep-log", action="store_true", help="print the server's log")
    parser.add_argument(
        "--profile",
        metavar="FILE",
        help="record the server with py-spy (pip install py-spy) as collapsed stacks",
    )
    parser.add_argument(
        "--slow-clients", type=int, default=0, help="connections that trickle a request head"
    )
    parser.add_argument("--flood", type=float, default=0.0, help="unauthenticated posts per second")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)  # the child's role
    parser.add_argument("--attack", nargs=3, help=argparse.SUPPRESS)  # the attacker's
    args = parser.parse_args()
    if args.load:
        path, port, connections, rate = args.load
        load_main(path, int(port), int(connections), float(rate))
        return
    if args.attack:
        port, slow, rate = args.attack
        attack_main(int(port), int(slow), float(rate))
        return

    from sqlalchemy import create_engine, text

    from dispatcher.db import migrate

    name = f"dlr_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    url = f"{ADMIN_URL.rsplit('/', 1)[0]}/{name}"
    server: subprocess.Popen[bytes] | None = None
    with tempfile.TemporaryDirectory() as tmp:
        try:
            started = time.perf_counter()
            migrate(url)
            seed_messages(url, args.messages)
            bodies, expected = callbacks(args.messages, args.reversed, args.duplicates)
            stream = Path(tmp) / "callbacks.ndjson"
            stream.write_bytes(b"\n".join(bodies))
            print(
                f"setup: {args.messages} messages inserted, {len(bodies)} callbacks built "
                f"in {time.perf_counter() - started:.1f} s"
            )
            port = free_port()
            env = os.environ | {"DATABASE_URL": url, "WEBHOOK_TOKEN": TOKEN}
            log = (Path(tmp) / "serve.log").open("wb")
            command = [
                sys.executable,
                "-m",
                "dispatcher.interfaces.cli",
                "serve",
                "--port",
                str(port),
                "--internal-port",
                "0",
            ]
            if args.profile:
                spy = Path(sys.executable).with_name("py-spy")
                out = str(Path(args.profile).resolve())
                command = [str(spy), "record", "--format", "raw", "-r", "200", "-o", out,
                           "--threads", "--gil", "--subprocesses", "--", *command]  # fmt: skip
            server = subprocess.Popen(
                command,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=tmp,
            )
            wait_healthy(port, server)
            before = (cpu_seconds(server.pid), postgres_cpu(), machine_busy(),
                      children_cpu(server.pid))  # fmt: skip
            attacker = None
            if args.slow_clients or args.flood:
                attacker = subprocess.Popen(
                    [
                        sys.executable,
                        __file__,
                        "--attack",
                        str(port),
                        str(args.slow_clients),
                        str(args.flood),
                    ],
                    stdout=subprocess.PIPE,
                )
                time.sleep(2.0)  # the slow clients connected, the flood under way
            load = (str(stream), str(port), str(args.connections), str(args.rate))
            child = subprocess.run(
                [sys.executable, __file__, "--load", *load],
                capture_output=True,
                check=True,
            )
            load_end = time.perf_counter()
            result = json.loads(child.stdout)
            attacked: dict[str, object] | None = None
            if attacker is not None:
                attacker.send_signal(signal.SIGTERM)
                out, _ = attacker.communicate(timeout=30)
                attacked = json.loads(out)
            after_load = (cpu_seconds(server.pid), postgres_cpu(), machine_busy(),
                          children_cpu(server.pid))  # fmt: skip
            while scalar(url, "SELECT count(*) FROM delivery_reports WHERE state='received'"):
                time.sleep(0.05)
            catch_up = time.perf_counter() - load_end
            after = (cpu_seconds(server.pid), postgres_cpu(), machine_busy(),
                     children_cpu(server.pid))  # fmt: skip
            stored = scalar(url, "SELECT count(*) FROM delivery_reports")
            wrong, states = mismatches(url, expected)
        finally:
            if server is not None:
                server.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
                server.wait(timeout=30)
                if args.keep_log:
                    print((Path(tmp) / "serve.log").read_text(errors="replace")[-5000:])
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    wall = result["wall"]
    machine = (after_load[2][0] - before[2][0]) / (after_load[2][1] - before[2][1])
    print(
        f"callbacks sent:          {result['sent']} ({result['statuses']}, lost {result['lost']})"
    )
    pace = f"paced at {args.rate:.0f}/s" if args.rate else "as fast as answered"
    print(f"wall time:               {wall:.2f} s over {args.connections} connections, {pace}")
    print(f"callbacks/s:             {result['sent'] / wall:.0f} "
          f"(each 10 s: {' '.join(map(str, result['per_second_by_10s']))})")  # fmt: skip
    print(f"response time:           p50 {result['p50']:.1f} ms, p99 {result['p99']:.1f} ms, "
          f"max {result['max']:.1f} ms (p99 each 10 s: "
          f"{' '.join(map(str, result['p99_by_10s']))})")  # fmt: skip
    if args.rate:
        print(f"  of which sent late:    p99 {result['send_lag_p99']:.1f} ms "
              "(the generator's own delay, counted in the response time)")  # fmt: skip
    shares = {
        "load generator": result["cpu"],
        "server": after_load[0] - before[0],
        "its applier process": after_load[3] - before[3],
        "PostgreSQL": used(before[1], after_load[1]),
    }
    busy = after_load[2][0] - before[2][0]
    shares["everything else"] = max(0.0, busy - sum(shares.values()))
    print("CPU during the load:     " + ", ".join(f"{k} {v / wall:.0%}" for k, v in shares.items())
          + f" of one core; machine {machine:.0%} busy of {os.cpu_count()} cores")  # fmt: skip
    if attacked is not None:
        print(f"under attack:            {args.slow_clients} slow clients (cut off and back "
              f"{attacked['slow_cut']} times), a flood of unauthenticated posts at "
              f"{attacked['flood_per_second']:.0f}/s answered {attacked['flood_answers']} "
              f"(attacker CPU {attacked['cpu'] / attacked['wall']:.0%} of one core)")  # fmt: skip
    print(f"raw rows stored:         {stored} (by state: {states})")
    print(f"applier catch-up:        {catch_up:.2f} s after the last answer "
          f"(server {after[0] - after_load[0]:.1f} s CPU, "
          f"applier {after[3] - after_load[3]:.1f} s CPU, "
          f"PostgreSQL {used(after_load[1], after[1]):.1f} s CPU)")  # fmt: skip
    print(f"mismatched final status: {wrong} of {len(expected)} messages")


if __name__ == "__main__":
    main()
