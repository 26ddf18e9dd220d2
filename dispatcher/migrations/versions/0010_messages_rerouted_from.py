"""messages: the BSUID a message was moved away from to the person's phone number

Revision ID: 0010
Revises: 0009
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Meta's 131062 (a BSUID is not allowed for this message): the message is sent once
    # more to the person's phone number; the BSUID it left is kept, so status counts it.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.add_column(sa.Column("rerouted_from", sa.String(length=160), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_column("rerouted_from")
