"""Engine and session set-up, and Alembic migrations run from code.

SQLAlchemy errors that mean "the database is not there" become ``StorageError`` here;
callers above never catch SQLAlchemy exceptions for that.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.errors import StorageError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine with the settings each backend needs for concurrent writers."""
    if url.startswith("sqlite"):
        engine = create_engine(
            url, connect_args={"timeout": 30}, pool_pre_ping=True, hide_parameters=True
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            # We issue BEGIN ourselves (below); pysqlite's implicit one is deferred.
            dbapi_connection.isolation_level = None
            # WAL lets readers run beside the one writer.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin_immediate(connection: Any) -> None:
            # A deferred transaction that reads, then writes after another writer
            # committed fails at once with SQLITE_BUSY; taking the write lock up front
            # makes concurrent writers queue on busy_timeout instead.
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    # hide_parameters: error messages must not carry phone numbers into logs.
    return create_engine(
        url, pool_pre_ping=True, pool_size=10, max_overflow=20, hide_parameters=True
    )


class Database:
    """One engine and session factory per process."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # SQLite has one writer at a time; threads of one process queue on this lock
        # rather than in SQLite's busy handler, which sleeps up to 100 ms per retry.
        self._write_lock: AbstractContextManager[Any] = (
            threading.Lock() if url.startswith("sqlite") else nullcontext()
        )

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on error."""
        try:
            with self._write_lock, self._sessions.begin() as session:
                yield session
        except OperationalError as exc:
            raise StorageError(f"database unavailable: {exc.orig}") from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise StorageError(f"database connection lost: {exc.orig}") from exc
            raise

    def dispose(self) -> None:
        self.engine.dispose()


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # only when migrating: a command starts faster

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # '%' must be escaped for configparser interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(url: str) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command

    try:
        command.upgrade(alembic_config(url), "head")
    except OperationalError as exc:
        raise StorageError(f"cannot migrate the database: {exc.orig}") from exc
