"""identifier columns in byte order ("C") on PostgreSQL (``models.Key``)

Their indexes are rebuilt, once a table (one ALTER TABLE each); the tables are not
rewritten (the values are the same).

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, length)
COLUMNS = (
    ("batches", "id", 64),
    ("messages", "destination", 160),
    ("messages", "batch_id", 64),
    ("messages", "link_message_id", 128),
    ("messages", "previous_link_message_id", 128),
    ("messages", "rerouted_from", 160),
    ("messages", "wa_message_id", 128),
    ("whatsapp_message_ids", "wa_message_id", 128),
    ("replies", "incoming_id", 128),
    ("whatsapp_echoes", "business_number", 32),
    ("whatsapp_echoes", "recipient", 160),
    ("whatsapp_echoes", "recipient_user_id", 160),
    ("whatsapp_echoes", "wa_message_id", 128),
    ("whatsapp_echoes", "original_message_id", 128),
    ("delivery_reports", "link_message_id", 128),
    ("delivery_reports", "ref_id", 64),
    ("identities", "identifier", 160),
    ("identities", "person_key", 160),
    ("retired_identities", "identifier", 160),
    ("retired_identities", "person_key", 160),
    ("suppressions", "identifier", 160),
    ("care_windows", "business", 32),
    ("care_windows", "identifier", 160),
)


def upgrade() -> None:
    _collate('"C"')


def downgrade() -> None:
    _collate('"default"')


def _collate(collation: str) -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite compares bytes already
    changes: dict[str, list[str]] = {}
    for table, column, length in COLUMNS:
        changes.setdefault(table, []).append(
            f"ALTER COLUMN {column} TYPE VARCHAR({length}) COLLATE {collation}"
        )
    for table, alterations in changes.items():
        op.execute(f"ALTER TABLE {table} {', '.join(alterations)}")
