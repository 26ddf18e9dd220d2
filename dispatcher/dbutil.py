"""Small dialect-aware statements shared by the modules that write."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, case
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def insert_ignoring_duplicates(
    session: Session, table: Table, rows: Sequence[dict[str, Any]]
) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on PostgreSQL and SQLite alike."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    session.execute(module.insert(table).on_conflict_do_nothing(), list(rows))


def upsert_latest(
    session: Session, table: Table, key: str, column: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Insert rows, or move ``column`` forward where a row with the same ``key`` exists."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    newer = getattr(statement.excluded, column)
    current = table.c[column]
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[key],
            set_={column: case((newer > current, newer), else_=current)},
        ),
        list(rows),
    )
