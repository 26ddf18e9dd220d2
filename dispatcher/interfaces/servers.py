"""Run an ASGI app with uvicorn: in the foreground (``run``: ``dispatcher serve`` and
``simulate``) or on a background thread (``ServerThread``: embedded mode and tests).

Both stop within seconds, however many requests are in flight:

1. the app's ``state.stopping`` turns true at once (``/healthz`` answers 503
   "stopping"); after a SIGTERM the listener stays open ``drain_seconds`` more, so a
   load balancer sees the 503 and stops sending before connections are refused;
2. the listener closes; requests in flight get ``GRACEFUL_SECONDS`` to finish, then
   are cancelled (a webhook body not yet committed was never answered 200: its
   sender delivers it again);
3. the lifespan ends (the webhook app commits and answers what is queued, then stops
   its applier: ``tracking.ingest``).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

import uvicorn

#: Requests in flight get this long to finish once the listener has closed.
GRACEFUL_SECONDS = 3


def announce_stop(app: Any) -> None:
    """Mark ``app`` as stopping (its ``/healthz`` reads ``state.stopping``)."""
    state = getattr(app, "state", None)
    if state is not None:
        state.stopping = True


class StoppingServer(uvicorn.Server):
    """uvicorn's server, announcing a stop as it begins and draining after SIGTERM."""

    def __init__(self, config: uvicorn.Config, *, drain_seconds: float = 0.0) -> None:
        super().__init__(config)
        self.drain_seconds = drain_seconds
        self.stopping = False
        self._drain_until: float | None = None

    def begin_stop(self, *, drain: bool = False) -> None:
        """Announce the stop; exit now, or once the drain is over."""
        self._announce()
        if drain and self.drain_seconds > 0:
            self._drain_until = time.monotonic() + self.drain_seconds
        else:
            self.should_exit = True

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.stopping and sig == signal.SIGTERM:
            self.begin_stop(drain=True)  # a second signal ends the drain
            return
        self._announce()
        super().handle_exit(sig, frame)  # (a second SIGINT skips the lifespan's end)

    def _announce(self) -> None:
        if not self.stopping:
            self.stopping = True
            announce_stop(self.config.app)

    async def on_tick(self, counter: int) -> bool:
        if self._drain_until is not None and time.monotonic() >= self._drain_until:
            self.should_exit = True
        return await super().on_tick(counter)


def config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration with a bounded graceful shutdown."""
    options.setdefault("timeout_graceful_shutdown", GRACEFUL_SECONDS)
    return uvicorn.Config(app, **options)


def run(app: Any, *, drain_seconds: float = 0.0, **options: Any) -> None:
    """``uvicorn.run`` for one process, stopping as this module says."""
    server = StoppingServer(config(app, **options), drain_seconds=drain_seconds)
    server.run()
    if not server.started:
        sys.exit(3)  # uvicorn's STARTUP_FAILURE: the port taken, the lifespan failed


class ServerThread:
    """A uvicorn server on its own thread; ``port=0`` picks a free port. The webhook app
    (an app that takes posts ``direct``) runs under its guarded protocol, as ``dispatcher
    serve`` runs it, unless ``http`` names another of uvicorn's."""

    def __init__(
        self, app: Any, *, host: str = "127.0.0.1", port: int = 0, http: Any = None
    ) -> None:
        from dispatcher.interfaces.edge import guarded_protocol

        webhooks = hasattr(app, "direct")
        if http is None:
            http = guarded_protocol() if webhooks else "auto"
        options = {"log_level": "warning", "lifespan": "on", "access_log": False, "http": http}
        if webhooks:  # the protocol reaches the app itself, with no middleware between
            options["proxy_headers"] = False
        self.server = StoppingServer(config(app, host=host, port=port, **options))
        self.host = host
        self._thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout_seconds: float = 10.0) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + timeout_seconds
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the HTTP server did not start")
            time.sleep(0.01)
        return self

    @property
    def port(self) -> int:
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_seconds: float = GRACEFUL_SECONDS + 5) -> None:
        self.server.begin_stop()
        self._thread.join(timeout=timeout_seconds)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
