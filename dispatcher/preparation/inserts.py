"""Writing the batches: each chunk in one transaction, on a thread of its own.

PostgreSQL takes a chunk's batches and messages by ``COPY`` (the rows formatted as COPY
text on the caller's thread), SQLite by executemany. A unique key violated means a
concurrent delivery of the prepare task wrote the same batch or person first
(``Concurrent``). The rows merged into an earlier row of their person are stored here
too, for the outcome report.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from sqlalchemy import Table, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from dispatcher.audience.passes import Merged
from dispatcher.db import Batch as BatchRow
from dispatcher.db import Database, MergedRow, Message
from dispatcher.db.bulk import copy_escape, copy_in, copy_text, insert_arrays
from dispatcher.errors import DispatcherError
from dispatcher.preparation.batching import Batch, json_text
from dispatcher.status import BatchState, MessageStatus

log = logging.getLogger(__name__)

#: Connections writing chunks at once (PostgreSQL).
WRITERS = 1
#: Merged rows written per statement.
MERGED_CHUNK = 5_000


class Concurrent(Exception):
    """Another delivery of the prepare task wrote the same batch or person first."""


class Committer:
    """Writes chunks on threads of their own while the caller composes the next ones.

    Most of a chunk's cost is PostgreSQL's (a random insert into the unique index per
    message): the driver waits without the GIL, so the server works on the other core
    while this thread formats the next rows. (Two connections were no faster on two
    cores.) At most ``WRITERS + 1`` chunks are in flight; ``on_written`` runs on the
    caller's thread, in order, once a chunk has committed.
    """

    def __init__(
        self, db: Database, campaign_id: int, on_written: Callable[[list[str]], None]
    ) -> None:
        self.db = db
        self.campaign_id = campaign_id
        self.on_written = on_written
        self._postgres = db.engine.dialect.name == "postgresql"
        writers = WRITERS if self._postgres else 1  # SQLite has one writer anyway
        self._pool = ThreadPoolExecutor(max_workers=writers, thread_name_prefix="prepare-writer")
        self._in_flight = writers + 1
        self._pending: deque[Future[list[str]]] = deque()
        self._first = True

    def submit(self, batches: list[Batch]) -> None:
        chunk = _chunk(self._postgres, self.campaign_id, batches)
        while len(self._pending) >= self._in_flight:
            self.on_written(self._pending.popleft().result())
        analyse, self._first = self._first and self._postgres, False
        self._pending.append(self._pool.submit(_insert, self.db, chunk, analyse))

    def __enter__(self) -> Committer:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            while self._pending:
                ids = self._pending.popleft().result()
                if kind is None:
                    self.on_written(ids)
        finally:
            self._pool.shutdown(wait=True)


_BATCHES: Table = BatchRow.__table__  # type: ignore[assignment]
_MESSAGES: Table = Message.__table__  # type: ignore[assignment]
_MERGED: Table = MergedRow.__table__  # type: ignore[assignment]
_BATCH_COLUMNS = (
    "id", "campaign_id", "seq", "state", "payload", "size", "attempts", "created_at",
    "not_before",
)  # fmt: skip
_MESSAGE_COLUMNS = (
    "campaign_id", "identity_key", "destination", "identifiers", "source_line", "params",
    "batch_id", "position", "status", "attempts", "updated_at",
)  # fmt: skip


@dataclass(slots=True)
class _Chunk:
    """Rows of one transaction, formatted for the database on the caller's thread
    (Python work holds the GIL either way), so the writer thread only waits on I/O."""

    batch_ids: list[str]
    batch_rows: list[tuple[Any, ...]]
    messages: str | list[dict[str, Any]]  # COPY text (PostgreSQL) or rows (SQLite)


def _chunk(postgres: bool, campaign_id: int, batches: list[Batch]) -> _Chunk:
    now = datetime.now(UTC)
    batch_rows = [
        (batch.id, campaign_id, batch.seq,
         _state(batch).value,
         json_text(batch.payload) if postgres else batch.payload, len(batch.members), 0, now,
         batch.not_before)
        for batch in batches
    ]  # fmt: skip
    messages: str | list[dict[str, Any]]
    if postgres:
        messages = _message_lines(campaign_id, batches, now)
    else:
        messages = [
            dict(zip(_MESSAGE_COLUMNS, (campaign_id, key, destination, identifiers, line,
                 json.loads(params), batch.id, position, MessageStatus.QUEUED.value, 0, now),
                 strict=True))
            for batch in batches
            for position, (key, destination, identifiers, line, params) in enumerate(batch.members)
        ]  # fmt: skip
    return _Chunk([batch.id for batch in batches], batch_rows, messages)


def _state(batch: Batch) -> BatchState:
    """Behind a canary: waiting (its tier hold, if any, applies once released)."""
    if batch.waiting:
        return BatchState.WAITING
    return BatchState.PENDING if batch.not_before is None else BatchState.HELD


def _insert(db: Database, chunk: _Chunk, analyse: bool = False) -> list[str]:
    """Write a chunk's batches and messages in one transaction; returns the batch ids.

    PostgreSQL takes them by ``COPY``, SQLite by executemany. ``analyse``: the first
    chunk of a preparation (PostgreSQL), after which ``_keep_statistics`` looks.
    """
    try:
        with db.session() as session:
            if isinstance(chunk.messages, str):
                # Not waiting for the WAL flush is safe here: a batch lost in a crash
                # was never claimed (a claim's own commit flushes everything before
                # it), and the resumed preparation writes its people again.
                session.execute(text("SET LOCAL synchronous_commit TO OFF"))
                copy_in(session, _BATCHES, _BATCH_COLUMNS, chunk.batch_rows)
                copy_text(session, _MESSAGES, _MESSAGE_COLUMNS, chunk.messages)
            else:
                batch_rows = [dict(zip(_BATCH_COLUMNS, r, strict=True)) for r in chunk.batch_rows]
                insert_arrays(session, _BATCHES, batch_rows)
                insert_arrays(session, _MESSAGES, chunk.messages)
    except (IntegrityError, psycopg.IntegrityError) as exc:
        if not _duplicate(exc):
            raise
        # A concurrent delivery of this task wrote the same batch or person first.
        raise Concurrent(str(exc)) from exc
    if analyse and isinstance(chunk.messages, str):
        _keep_statistics(db, len(chunk.batch_rows), chunk.messages.count("\n"))
    return chunk.batch_ids


def _keep_statistics(db: Database, batches: int, messages: int) -> None:
    """``ANALYZE`` the batches and messages tables when the chunk just written holds
    more rows than the planner believes the table has (never analysed, or at least
    doubled since): a new database's first campaign otherwise has its every slice read
    its messages by a full scan of the table (5-10 ms, not 0.2) until autovacuum comes
    round, a minute or more later. A big table is left to autovacuum. Best effort: the
    chunk has committed, and only the plans would suffer, so no failure here (a lock
    held by a long maintenance job, a role that does not own the tables, a lost
    connection) stops the preparation."""
    try:
        with db.session() as session:
            session.execute(text("SET LOCAL lock_timeout = '2s'"))
            believed: dict[str, float] = {
                table: rows
                for table, rows in session.execute(
                    text(
                        "SELECT relname, reltuples FROM pg_class"
                        " WHERE oid IN ('batches'::regclass, 'messages'::regclass)"
                    )
                )
            }
            stale = [
                table
                for table, written in (("batches", batches), ("messages", messages))
                if believed.get(table, 0) < written
            ]
            if stale:
                session.execute(text(f"ANALYZE {', '.join(stale)}"))
    except (SQLAlchemyError, DispatcherError) as exc:
        log.warning("could not analyse the batches and messages tables: %s", exc)


def _message_lines(campaign_id: int, batches: list[Batch], now: datetime) -> str:
    """``COPY`` text of the messages, built directly: a million rows go through here.

    Identifiers (and so identity keys) are validated E.164 numbers and BSUIDs
    (``[+.0-9A-Za-z]``): safe inside JSON and COPY text as they are. Only the values
    from the CSV need escaping.
    """
    tail = f"\t{MessageStatus.QUEUED.value}\t0\t{now.isoformat()}"
    lines: list[str] = []
    append = lines.append
    for batch in batches:
        batch_id = batch.id
        for position, (key, destination, ids, line, params) in enumerate(batch.members):
            identifiers = '["' + '","'.join(ids) + '"]'
            append(f"{campaign_id}\t{key}\t{destination}\t{identifiers}\t{line}\t"
                   f"{copy_escape(params)}\t{batch_id}\t{position}{tail}")  # fmt: skip
    lines.append("")
    return "\n".join(lines)


def _duplicate(exc: Exception) -> bool:
    """A unique key violated (PostgreSQL SQLSTATE 23505, SQLite's message)."""
    orig = getattr(exc, "orig", exc)
    return getattr(orig, "sqlstate", None) == "23505" or "UNIQUE constraint" in str(orig)


def record_merged(db: Database, campaign_id: int, merged: Iterable[Merged]) -> None:
    """Store the rows merged into an earlier one, for the report. A preparation run
    again (resumed, or its task delivered twice) finds them stored: each line once."""
    postgres = db.engine.dialect.name == "postgresql"
    rows: list[dict[str, Any]] = []
    for row in merged:
        identifiers = list(row.identifiers)
        rows.append({"campaign_id": campaign_id, "file": row.file, "line": row.line,
                     "identifiers": json_text(identifiers) if postgres else identifiers,
                     "kept_file": row.kept_file, "kept_line": row.kept_line,
                     "description": row.description})  # fmt: skip
        if len(rows) >= MERGED_CHUNK:
            _insert_merged(db, rows)
            rows = []
    _insert_merged(db, rows)


def _insert_merged(db: Database, rows: list[dict[str, Any]]) -> None:
    if rows:
        with db.session() as session:
            insert_arrays(session, _MERGED, rows, ignore_duplicates=True)
