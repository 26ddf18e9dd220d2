"""care windows per business number; messages: why a message was not sent

Revision ID: 0011
Revises: 0010
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Seed 004 '24 hour customer care window': the window opens "when a WhatsApp user
    # sends a message to a business's phone number", so it is kept per business number.
    # Rows written before knew no number (''): they open no window for any sender.
    with op.batch_alter_table("care_windows", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("business", sa.String(length=32), nullable=False, server_default="")
        )
        batch_op.drop_constraint("pk_care_windows", type_="primary")
        batch_op.create_primary_key("pk_care_windows", ["business", "identifier"])
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("skip_reason", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("skip_reason")
    op.execute("DELETE FROM care_windows WHERE business <> ''")
    with op.batch_alter_table("care_windows", schema=None) as batch_op:
        batch_op.drop_constraint("pk_care_windows", type_="primary")
        batch_op.create_primary_key("pk_care_windows", ["identifier"])
        batch_op.drop_column("business")
