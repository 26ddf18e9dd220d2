"""Between a webhook request and its answer: group commit; after it: the applier.

* The **writer**, a task on the server's event loop, takes every body that arrived
  while the previous commit was running, inserts them with one statement and commits
  once, then answers each of their requests (group commit: a request is answered only
  after the commit that holds its body; under load one commit carries many bodies,
  idle it carries one). On PostgreSQL it talks to the database from the loop itself
  (psycopg async, autocommit: one round trip per group); a thread in between would
  wait for the GIL behind the busy loop at every hand-over (measured: a 1 ms INSERT
  took 3.75 ms). On SQLite the statement runs on a worker thread.
* The **applier** wakes after commits, lets a few more arrive (``linger_seconds``), and
  applies what was stored, as sets (``tracking.apply_received``), walking the reports'
  ids from its mark. A report about a request still in flight (its batch
  ``submitting``: the worker has not stored the answer's ids yet) is left untried and
  its id kept (``deferred``); it is applied once the answer is stored
  (``tracking.apply_deferred``). A restarted applier finds such reports still
  ``received``, from the oldest untried one.

On PostgreSQL the applier is a child process (``multiprocessing``, spawned): applying
is CPU work in Python, and in the server's process it would contend with the event
loop for the GIL (measured on 2 cores: ~260 us of server CPU per callback with a
thread, ~150 us split over two processes). A program that embeds the app must guard
its entry point (``if __name__ == "__main__":``) as multiprocessing requires;
``dispatcher serve`` does. On SQLite (the embedded default, one writer at a time
anyway) the applier is a thread.

The server tells its applier process what to do over a pipe (``_Bell``), never with a
multiprocessing ``Event``: an ``Event.set`` waits for a sleeper that died (a SIGTERM to
the whole process group reaches the child too) and the stop hung for ever. Writes to
the pipe never block, and a dead child only makes them fail. The child ignores SIGINT
(the parent stops it: ``stop_applier`` sends a stop message, ``join``s with a timeout,
then kills); SIGTERM, or its parent gone (end of file on the pipe), stops it after its
current transaction. Its last transaction either commits or rolls back: a report is applied
once, or is still ``received`` for the next applier.

Nothing is held only in memory: a body is in the database before its 200, and a
report is applied from its stored row. Reports left ``received`` by a crash, and those
still ``unmatched``, are the periodic sweep's (``tracking.sweep``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal, Protocol

import psycopg
import redis
from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from dispatcher.audience import book
from dispatcher.db import Database, DeliveryReport
from dispatcher.db.bulk import insert_arrays, postgres_insert, sorted_ids
from dispatcher.errors import StorageError
from dispatcher.masking import mask
from dispatcher.providers import load_parsers
from dispatcher.sending.throttle import Throttle
from dispatcher.tracking import apply as tracking
from dispatcher.tracking import sender_events
from dispatcher.tracking.intake import Received, ReportState

log = logging.getLogger(__name__)

# One INSERT carries at most this many bodies; more wait for the next commit.
MAX_GROUP = 2000
# After the first body of a group, the writer waits a moment for more before it commits
# (PostgreSQL's ``commit_delay``, for us): a commit costs the server and the database
# about the same whether it carries one body or ten, and bodies otherwise come one or
# two at a time. A callback is answered at most this much later; LINK waits seconds.
GATHER_SECONDS = 0.002
# The wait when the server counts its callers' connections (``Ingest.callers``: those
# that have carried a webhook post, ``WebhookApp.caller_arrived``): longer, and ended
# at once when each of them holds a body waiting, since none can send another before
# its answer. A busy second's groups are as big as the callers' connections, a quiet
# one's gather what ten milliseconds bring (STANDARD one person a request: a quarter
# less CPU in the webhook app, a fifth less in PostgreSQL, than with 2 ms). A caller's
# connection left idle meanwhile holds every group to the whole wait.
COUNTED_GATHER_SECONDS = 0.010
_REPORTS: Table = DeliveryReport.__table__  # type: ignore[assignment]

ApplierMode = Literal["thread", "process"]
# Deferred reports (about requests in flight) wait in memory, at most this many, and are
# looked at again this often while no other report arrives (a linger's time: more
# often, an applier that always has some request in flight, at STANDARD, would spend
# more on looking than on applying).
DEFERRED_KEPT = 100_000
DEFERRED_WAIT_SECONDS = 0.5
APPLIER_NICENESS = 10  # the applier process's CPU priority below the receiver's


class _Event(Protocol):
    def set(self) -> None: ...
    def is_set(self) -> bool: ...
    def wait(self, timeout: float | None = None) -> bool: ...
    def clear(self) -> None: ...


class _Counter(Protocol):
    """The applier's mark, shared without a lock: one writer (the applier), and a
    lock held by a child that died would stop every reader for ever."""

    value: int


#: How long ``stop_applier`` waits for the applier to finish its transaction before it
#: kills the process (a transaction looks at ``ApplierSettings.limit`` reports).
STOP_WAIT_SECONDS = 4.0
SIGNAL_SWITCH_SECONDS = 0.0005
_WAKE, _HURRY, _STOP = b"w", b"h", b"s"


class _Signals:
    """The applier's three signals: ``wake`` (bodies were committed), ``hurry``
    (someone waits for the applier: no lingering), ``stop``."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.hurry = threading.Event()
        self.stop = threading.Event()

    def ring(self, *what: bytes) -> None:
        events = {_WAKE[0]: self.wake, _HURRY[0]: self.hurry, _STOP[0]: self.stop}
        for code in b"".join(what):
            events[code].set()

    def relay(self, pipe: Connection, own: int) -> None:
        """Ring what arrives on ``pipe`` from the parent, or on the file descriptor
        ``own`` from this process's SIGTERM handler (the applier process's thread);
        stop at the pipe's end, the parent being gone."""
        try:
            while True:
                for ready in wait([pipe, own]):
                    self.ring(pipe.recv_bytes() if ready is pipe else os.read(own, 64))
        except (EOFError, OSError):
            self.ring(_STOP)


class _Bell:
    """The server's end of its applier process's pipe. A write never blocks the event
    loop: a full pipe already holds a wake-up, and a dead reader is the stop's concern."""

    def __init__(self, pipe: Connection) -> None:
        self.pipe = pipe
        os.set_blocking(pipe.fileno(), False)

    def ring(self, *what: bytes) -> None:
        with contextlib.suppress(OSError):  # BlockingIOError, BrokenPipeError
            self.pipe.send_bytes(b"".join(what))

    def close(self) -> None:
        self.pipe.close()


@dataclass(frozen=True, slots=True)
class ApplierSettings:
    opt_out_words: frozenset[str] | None = None
    limit: int = 5000  # reports looked at per transaction
    linger_seconds: float = 0.5  # after a wake-up, let more arrive: bigger sets
    idle_seconds: float = 1.0  # look anyway this often (rows others left)
    # Where the send limiter lives: rate-limit errors in reports lower the sender's
    # rate there (``Throttle.penalise``). None: nobody to tell (the embedded test app).
    redis_url: str | None = None


_Pending = tuple[Received, "asyncio.Future[int]"]


class Ingest:
    """Group commit of webhook bodies and the background applier, for one server."""

    def __init__(
        self,
        db: Database,
        *,
        opt_out_words: frozenset[str] | None = None,
        applier: ApplierMode | None = None,
        settings: ApplierSettings | None = None,
    ) -> None:
        self.db = db
        self.settings = settings or ApplierSettings(opt_out_words=opt_out_words)
        self.postgres = not db.url.startswith("sqlite")
        self.mode: ApplierMode = applier or ("process" if self.postgres else "thread")
        self.commits = 0  # groups committed (bodies per commit = the grouping achieved)
        self.gather_seconds = GATHER_SECONDS if self.postgres else 0.0
        self.counted_gather_seconds = COUNTED_GATHER_SECONDS
        # How many connections the callers hold open, when the server counts them
        # (``WebhookApp.caller_arrived``); None: the writer waits ``gather_seconds``.
        self.callers: Callable[[], int] | None = None
        self._gathering: asyncio.Future[None] | None = None
        self._last_received = 0  # id of the newest body committed as 'received'
        self._urgent = False  # a body carrying a guardrail's signal waits in the queue
        self._signalled: queue.SimpleQueue[list[Received] | None] | None = None  # at once
        self._start_lock = threading.Lock()
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._connection: psycopg.AsyncConnection[Any] | None = None
        self._applier: threading.Thread | multiprocessing.process.BaseProcess | None = None
        self._signals = _Signals()  # the thread's (a process gets its own)
        self._bell: _Signals | _Bell = self._signals
        # The applier's mark: every report up to it has been through the applier.
        context = multiprocessing.get_context("spawn")
        self._mark: _Counter = context.Value("q", 0, lock=False)

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Start the applier (the writer starts with the first body, on its loop)."""
        with self._start_lock:
            if self._applier is not None:
                return
            if self.mode == "thread":
                self._signals = signals = _Signals()
                self._bell = signals
                self._applier = threading.Thread(
                    target=_Applier(self.db, self.settings, signals, self._mark).run,
                    name="ingest-applier",
                    daemon=True,
                )
                self._applier.start()
                return
            context = multiprocessing.get_context("spawn")
            reader, writer = context.Pipe(duplex=False)
            self._applier = context.Process(
                target=_applier_process,
                args=(self.db.url, self.settings, reader, self._mark),
                name="dispatcher-applier",
                daemon=True,
            )
            try:
                self._applier.start()
            finally:
                reader.close()  # the child's end: its death then breaks the pipe
            self._bell = _Bell(writer)

    async def close(self) -> None:
        """Commit and answer what is queued, then stop the writer and the applier."""
        if self._writer is not None and self._queue is not None:
            self._queue.put_nowait(None)
            if self._gathering is not None and not self._gathering.done():
                self._gathering.set_result(None)  # nothing more is coming
            await self._writer
            self._writer = self._queue = None
        if self._connection is not None:
            await self._connection.close()
            self._connection = None
        if self._signalled is not None:
            self._signalled.put(None)
            self._signalled = None
        await asyncio.to_thread(self.stop_applier)

    def stop_applier(self, timeout_seconds: float = STOP_WAIT_SECONDS) -> None:
        """Stop the applier after its current transaction; a process that has not
        ended within ``timeout_seconds`` is killed (its transaction rolls back)."""
        with self._start_lock:
            applier, self._applier = self._applier, None
            if applier is None:
                return
            self._bell.ring(_STOP, _HURRY, _WAKE)  # out of its linger and its wait
            applier.join(timeout_seconds)
            if isinstance(applier, multiprocessing.process.BaseProcess):
                if applier.is_alive():
                    log.warning("the applier did not stop within %.0f s: killed", timeout_seconds)
                    applier.kill()
                    applier.join(timeout_seconds)
                applier.close()
                if isinstance(self._bell, _Bell):
                    self._bell.close()
                self._bell = self._signals

    # -- the request side --------------------------------------------------------------
    async def store(self, received: Received) -> int:
        """Store a body; returns its id once committed. ``StorageError`` when the
        database cannot take it (the caller answers 503 and LINK retries)."""
        return await self.submit(received)

    def submit(self, received: Received) -> asyncio.Future[int]:
        """``store`` without the wait, from the server's event loop: the future holds
        the body's id once committed, or the ``StorageError``."""
        if self._applier is None:
            self.start()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(self._queue))
            self._start_signals()
        if received.state is ReportState.RECEIVED and received.urgent:
            self._urgent = True  # its group is applied without the linger
            # Acted on as it arrives: on a busy second the group commits run behind.
            self._act_at_once([received])
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((received, future))
        gathering = self._gathering
        if gathering is not None and not gathering.done() and self._all_callers_wait():
            gathering.set_result(None)
        return future

    def _all_callers_wait(self) -> bool:
        """Every caller's connection holds a body not yet committed (the group's first,
        taken off the queue, included): waiting longer gathers nothing more."""
        assert self._queue is not None
        return self.callers is not None and self._queue.qsize() + 1 >= self.callers()

    def wait_applied(self, timeout_seconds: float = 10.0) -> bool:
        """Wait until every body stored so far has been through the applier (tests,
        benchmarks; from another thread than the server's loop); False on timeout."""
        target = self._last_received
        deadline = time.monotonic() + timeout_seconds
        self._bell.ring(_HURRY, _WAKE)  # no lingering for more
        while self._mark.value < target:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    # -- the writer --------------------------------------------------------------------
    async def _write_loop(self, queue: asyncio.Queue[_Pending | None]) -> None:
        while True:
            first = await queue.get()
            if first is None:
                return
            if self.gather_seconds and queue.qsize() < MAX_GROUP:
                await self._gather()
            group = [first]
            stop = False
            while len(group) < MAX_GROUP and not queue.empty():
                item = queue.get_nowait()
                if item is None:
                    stop = True
                    break
                group.append(item)
            results = await self._insert([received for received, _ in group])
            received = [
                r
                for (body, _), r in zip(group, results, strict=True)
                if isinstance(r, int) and body.state is ReportState.RECEIVED
            ]
            if received:
                self._last_received = max(self._last_received, *received)
                urgent, self._urgent = self._urgent, False
                if urgent:  # a guardrail's signal: applied without the linger
                    self._bell.ring(_HURRY, _WAKE)
                else:
                    self._bell.ring(_WAKE)
            for (_, future), result in zip(group, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if stop:
                return

    async def _gather(self) -> None:
        """Wait for more bodies: ``gather_seconds``; with the callers counted, the
        longer ``counted_gather_seconds`` or until every caller waits."""
        if self._all_callers_wait():
            return
        wait = self.gather_seconds
        if self.callers is not None:
            wait = max(wait, self.counted_gather_seconds)
        loop = asyncio.get_running_loop()
        gathering = self._gathering = loop.create_future()
        timer = loop.call_later(wait, _settle, gathering)
        try:
            await gathering
        finally:
            timer.cancel()
            self._gathering = None

    def _act_at_once(self, bodies: list[Received]) -> None:
        """Pause the campaigns these bodies stop (``sender_events.pause_at_once``) beside
        the loop, not waiting for their commit or the applier (which apply them as usual;
        a second pause is a no-op); the answers do not wait for it. A thread of its own,
        connected before the first signal: one started at the signal, on a server busy
        with a second's callbacks, took a quarter of a second to run."""
        self._start_signals()
        assert self._signalled is not None
        self._signalled.put(bodies)

    def _start_signals(self) -> None:
        if self._signalled is not None:
            return
        # The thread waits for the GIL while the loop serves a busy second's callbacks:
        # handed over within 0.5 ms instead of 5 (no cost while nobody else waits).
        sys.setswitchinterval(min(sys.getswitchinterval(), SIGNAL_SWITCH_SECONDS))
        signalled: queue.SimpleQueue[list[Received] | None] = queue.SimpleQueue()
        self._signalled = signalled
        threading.Thread(
            target=self._pause_signalled, args=(signalled,), name="guardrail-signals", daemon=True
        ).start()

    def _pause_signalled(self, signalled: queue.SimpleQueue[list[Received] | None]) -> None:
        with contextlib.suppress(Exception), self.db.session() as session:
            session.execute(select(1))  # connected before the first signal comes
        stop = False
        while not stop and (bodies := signalled.get()) is not None:
            with contextlib.suppress(queue.Empty):  # those that came meanwhile, in one look
                while not stop:
                    more = signalled.get_nowait()
                    stop = more is None
                    bodies += more or []
            try:
                with self.db.session() as session:
                    sender_events.pause_at_once(session, [(b.kind, b.body) for b in bodies])
            except Exception:  # the applier pauses them when it applies the bodies
                log.exception("a guardrail's signal could not be acted on at once")

    async def _insert(self, group: list[Received]) -> list[int | Exception]:
        try:
            ids = await self._write([r.row() for r in group])
            self.commits += 1
            return list(ids)
        except StorageError as exc:
            return [exc] * len(group)
        except Exception:  # one row the database refuses must not cost the others
            if len(group) == 1:
                return [await self._insert_bare(group[0])]
            log.exception("a group of %d bodies could not be stored; one by one", len(group))
            return [(await self._insert([r]))[0] for r in group]

    async def _insert_bare(self, received: Received) -> int | Exception:
        """Keep at least the body when its derived columns cannot be stored."""
        try:
            return int((await self._write([received.bare_row("fields unstorable")]))[0])
        except Exception as exc:
            log.exception("a body could not be stored")
            return exc if isinstance(exc, StorageError) else StorageError(str(exc))

    async def _write(self, rows: list[dict[str, Any]]) -> list[int]:
        """One INSERT of every row, committed; their ids in row order."""
        if not self.postgres:
            return await asyncio.to_thread(self._write_sqlite, rows)
        sql, parameters = postgres_insert(_REPORTS, rows, returning="id")
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await psycopg.AsyncConnection.connect(
                    self._conninfo(),
                    autocommit=True,  # the INSERT is the transaction
                )
            cursor = await self._connection.execute(sql, parameters)
            return sorted_ids(row[0] for row in await cursor.fetchall())
        except psycopg.OperationalError as exc:
            if self._connection is not None:
                with contextlib.suppress(Exception):
                    await self._connection.close()
                self._connection = None
            raise StorageError(f"database unavailable: {exc}") from exc

    def _write_sqlite(self, rows: list[dict[str, Any]]) -> list[int]:
        with self.db.session() as session:  # the process's SQLite write lock
            return insert_arrays(session, _REPORTS, rows, returning="id")

    def _conninfo(self) -> str:
        url = self.db.engine.url.set(drivername="postgresql")
        return url.render_as_string(hide_password=False)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class _Applier:
    """The applier's loop; the same in a thread and in a child process."""

    def __init__(
        self,
        db: Database,
        settings: ApplierSettings,
        signals: _Signals,
        mark: _Counter,
    ) -> None:
        self.db = db
        self.settings = settings
        self.wake: _Event = signals.wake
        self.stop: _Event = signals.stop
        self.hurry: _Event = signals.hurry
        self.mark = mark
        self.after_id: int | None = None  # every report up to it has been looked at
        # Reports about a request still in flight, left untried (``tracking._landed``),
        # in id order; beyond DEFERRED_KEPT the oldest are the sweep's.
        self.deferred: list[int] = []
        self.let_go = sys.maxsize  # the oldest deferred report given up to the sweep
        self.known = book.Known()
        self.throttle = (
            Throttle(redis.Redis.from_url(settings.redis_url)) if settings.redis_url else None
        )

    def run(self) -> None:
        while not self.stop.is_set():
            # Deferred reports are looked at again soon, whether more arrive or not.
            idle = DEFERRED_WAIT_SECONDS if self.deferred else self.settings.idle_seconds
            woken = self.wake.wait(idle)
            if self.stop.is_set():
                return
            self.wake.clear()
            if woken:  # let a few more arrive, unless someone waits for this set
                self.hurry.wait(self.settings.linger_seconds)
            self.hurry.clear()
            try:
                self.apply_all()
            except Exception:  # the rows stay 'received'; the next round retries them
                log.exception("applying stored reports failed; retrying shortly")
                self.stop.wait(self.settings.idle_seconds)

    def apply_all(self) -> None:
        try:
            self.apply_landed()
        except Exception:  # the walk still runs; the deferred are tried again next round
            log.exception("applying deferred reports failed")
        while not self.stop.is_set():
            deferred: list[int] = []
            with self.applying() as session:
                after_id = self.after_id
                if after_id is None:
                    after_id = tracking.unapplied_from(session)
                last, looked_at = tracking.apply_received(
                    session,
                    after_id=after_id,
                    limit=self.settings.limit,
                    opt_out_words=self.settings.opt_out_words,
                    known_groups=self.known,
                    deferred=deferred,
                )
            self.after_id = after_id if last is None else last  # once the set is committed
            self.keep(self.deferred + deferred)
            if looked_at < self.settings.limit:
                return  # caught up: rest until the next commit, and a linger, gather more

    def apply_landed(self) -> None:
        """Apply the deferred reports whose requests have been answered since."""
        if not self.deferred:
            return
        still: list[int] = []
        with self.applying() as session:
            tracking.apply_deferred(
                session,
                self.deferred,
                still,
                opt_out_words=self.settings.opt_out_words,
                known_groups=self.known,
            )
        self.keep(still)

    @contextlib.contextmanager
    def applying(self) -> Iterator[Session]:
        """One committed transaction of applying: the groups it taught the identity
        book are remembered once it commits (forgotten if it fails), and the senders
        its reports found rate-limited are slowed down after it."""
        try:
            with self.db.session() as session:
                yield session
                limited = tracking.rate_limited_senders(session)
        except BaseException:
            self.known.discard()
            raise
        self.known.commit()
        self.slow_down(limited)

    def keep(self, deferred: list[int]) -> None:
        """Hold these deferred reports (the newest DEFERRED_KEPT: the older stay
        'received' for the sweep) and move the mark ``wait_applied`` reads: every
        report up to it has been applied or found nothing to apply."""
        deferred = sorted(deferred)
        if len(deferred) > DEFERRED_KEPT:  # the mark never passes those let go
            self.let_go = min(self.let_go, deferred[0])
            deferred = deferred[-DEFERRED_KEPT:]
        self.deferred = deferred
        assert self.after_id is not None
        lowest = min(self.deferred[0] if self.deferred else self.after_id + 1, self.let_go)
        self.mark.value = min(self.after_id, lowest - 1)

    def slow_down(self, senders: dict[str, tracking.Refused]) -> None:
        """Rate-limit errors reported for these senders: lower their rate a while."""
        if not senders or self.throttle is None:
            return
        for sender, refused in senders.items():
            try:
                factor = self.throttle.penalise(sender, refused.messages, refused.level)
            except StorageError as exc:
                log.warning("could not lower the rate of a rate-limited sender: %s", exc)
                return
            log.warning("sender %s is rate-limited by Meta: now %.0f %% of its level",
                        mask(sender), factor * 100)  # fmt: skip


def _applier_process(url: str, settings: ApplierSettings, pipe: Connection, mark: _Counter) -> None:
    """The applier as a child process: stops when its parent says so or is gone."""
    # Ctrl+C is the parent's to handle: it finishes what it stored, then tells this
    # process. A SIGTERM (to the whole group, or multiprocessing's own at the parent's
    # exit) stops it after its transaction; the handler only writes a byte, to a pipe
    # the relay thread reads (an Event set from a handler could wait for a lock its
    # own thread holds).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    own_read, own_write = os.pipe()
    os.set_blocking(own_write, False)

    def stop_on_sigterm(*_: object) -> None:
        with contextlib.suppress(OSError):
            os.write(own_write, _STOP)

    signal.signal(signal.SIGTERM, stop_on_sigterm)
    signals = _Signals()
    relay = threading.Thread(
        target=signals.relay, args=(pipe, own_read), name="applier-pipe", daemon=True
    )
    relay.start()
    # Applying can wait a moment; answering LINK cannot: when the cores are busy, the
    # receiver goes first (bench/dlr_ingest.py paced at 5000/s on 2 cores: response
    # p99 116 ms -> 86 ms, max 259 ms -> 128 ms).
    with contextlib.suppress(OSError, AttributeError):
        os.nice(APPLIER_NICENESS)
    db = Database(url)
    try:
        applier = _Applier(db, settings, signals, mark)
        # What start-up built (modules, models, the engine) out of the collector's
        # sight: a full collection otherwise walks all of it, again and again while
        # reports flow.
        load_parsers()
        gc.collect()
        gc.freeze()
        applier.run()
    finally:
        db.dispose()
