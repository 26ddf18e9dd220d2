from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect

from dispatcher.db import migrate

EXPECTED = {
    "alembic_version",
    "batches",
    "campaigns",
    "delivery_reports",
    "identities",
    "media",
    "merged_rows",
    "messages",
    "suppressions",
}


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_migrations_create_every_table_and_run_twice_harmlessly(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    migrate(url)
    engine = create_engine(url)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) >= EXPECTED
    uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints("messages")}
    assert ("campaign_id", "identity_key") in uniques
    engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_migrations_build_exactly_the_models(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from dispatcher.db import Base

    url = (
        f"sqlite:///{tmp_path / 'm.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    migrate(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    engine.dispose()


def test_the_migrations_give_the_models_collations_on_postgresql(pg_url: str) -> None:
    # compare_metadata does not compare collations: identifier columns (``models.Key``)
    # are byte-ordered by the migrations too, and no other column is.
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    from dispatcher.db import Base

    dialect = postgresql.dialect()
    expected = {
        (table.name, column.name): getattr(column.type.dialect_impl(dialect), "collation", None)
        for table in Base.metadata.tables.values()
        for column in table.columns
    }
    migrate(pg_url)
    engine = create_engine(pg_url)
    with engine.connect() as connection:
        collated = connection.execute(
            text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns"
                " WHERE table_schema = current_schema() AND collation_name IS NOT NULL"
            )
        ).all()
    engine.dispose()
    actual = {(table, column): collation for table, column, collation in collated}
    assert actual == {key: value for key, value in expected.items() if value is not None}
    assert len(actual) >= 20
