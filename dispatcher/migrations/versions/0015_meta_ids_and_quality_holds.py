"""messages and delivery_reports: room for Meta's message ids; quality holds

Revision ID: 0015
Revises: 0014
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_WIDENED = (
    ("messages", "link_message_id"),
    ("messages", "previous_link_message_id"),
    ("delivery_reports", "link_message_id"),
)


def upgrade() -> None:
    # Meta's Cloud API answers with its WhatsApp message id (``wamid.``...), which runs
    # past 64 characters. A longer varchar is a catalogue change in PostgreSQL: no table
    # or index is rewritten.
    for table, column in _WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.String(length=64), type_=sa.String(length=128)
            )
    # Meta holds a template message back for quality assessment (template pacing,
    # seed 002, ``message_status: held_for_quality_assessment``); status says so.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_for_quality", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("held_for_quality")
    for table, column in _WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                column, existing_type=sa.String(length=128), type_=sa.String(length=64)
            )
