"""identifier columns in byte order ("C") on PostgreSQL (``models.Key``)

Their indexes are rebuilt; the tables are not rewritten (the values are the same).

Revision ID: 0021
Revises: 0020
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, length, nullable)
COLUMNS = (
    ("batches", "id", 64, False),
    ("messages", "destination", 160, False),
    ("messages", "batch_id", 64, True),
    ("messages", "link_message_id", 128, True),
    ("messages", "previous_link_message_id", 128, True),
    ("messages", "rerouted_from", 160, True),
    ("messages", "wa_message_id", 128, True),
    ("whatsapp_message_ids", "wa_message_id", 128, False),
    ("replies", "incoming_id", 128, False),
    ("whatsapp_echoes", "business_number", 32, False),
    ("whatsapp_echoes", "recipient", 160, False),
    ("whatsapp_echoes", "recipient_user_id", 160, True),
    ("whatsapp_echoes", "wa_message_id", 128, False),
    ("whatsapp_echoes", "original_message_id", 128, True),
    ("delivery_reports", "link_message_id", 128, True),
    ("delivery_reports", "ref_id", 64, True),
    ("identities", "identifier", 160, False),
    ("identities", "person_key", 160, False),
    ("retired_identities", "identifier", 160, False),
    ("retired_identities", "person_key", 160, False),
    ("suppressions", "identifier", 160, False),
    ("care_windows", "business", 32, False),
    ("care_windows", "identifier", 160, False),
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite compares bytes already
    for table, column, length, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.String(length, collation="C"),
            existing_type=sa.String(length), existing_nullable=nullable,
        )  # fmt: skip


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, column, length, nullable in COLUMNS:
        op.alter_column(
            table, column, type_=sa.String(length),
            existing_type=sa.String(length, collation="C"), existing_nullable=nullable,
        )  # fmt: skip
