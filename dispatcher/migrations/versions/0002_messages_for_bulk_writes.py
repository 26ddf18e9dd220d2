"""messages for bulk writes: no foreign keys, partial indexes on mostly-NULL columns

A million messages are written by COPY in one preparation. The two foreign keys cost
a trigger call per row each (about half of the insert), and three indexes held an
entry for every message although their column is set for few. On PostgreSQL the
identity key compares bytewise ("C"): it is an ASCII identifier, and the unique index
takes a random insert per message.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = {
    "uq_messages_link_message_id": ("link_message_id", True),
    "ix_messages_previous_link_message_id": ("previous_link_message_id", False),
    "ix_messages_next_attempt_at": ("next_attempt_at", False),
}


def upgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_constraint("fk_messages_batch_id_batches", type_="foreignkey")
        batch_op.drop_constraint("fk_messages_campaign_id_campaigns", type_="foreignkey")
        batch_op.drop_constraint("uq_messages_link_message_id", type_="unique")
        batch_op.drop_index("ix_messages_previous_link_message_id")
        batch_op.drop_index("ix_messages_next_attempt_at")
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "messages", "identity_key", type_=sa.String(160, collation="C"),
            existing_type=sa.String(160), existing_nullable=False,
        )  # fmt: skip
    for name, (column, unique) in _PARTIAL.items():
        where = sa.text(f"{column} IS NOT NULL")
        op.create_index(
            name, "messages", [column], unique=unique,
            postgresql_where=where, sqlite_where=where,
        )  # fmt: skip


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "messages", "identity_key", type_=sa.String(160),
            existing_type=sa.String(160, collation="C"), existing_nullable=False,
        )  # fmt: skip
    for name in _PARTIAL:
        op.drop_index(name, table_name="messages")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index("ix_messages_next_attempt_at", ["next_attempt_at"])
        batch_op.create_index("ix_messages_previous_link_message_id", ["previous_link_message_id"])
        batch_op.create_unique_constraint("uq_messages_link_message_id", ["link_message_id"])
        batch_op.create_foreign_key(
            "fk_messages_campaign_id_campaigns", "campaigns", ["campaign_id"], ["id"]
        )
        batch_op.create_foreign_key("fk_messages_batch_id_batches", "batches", ["batch_id"], ["id"])
