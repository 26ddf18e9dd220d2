"""media cached per LINK account and simulator instance; each campaign's input digest

Revision ID: 0007
Revises: 0006
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Ids cached before this knew no account: they are uploaded again once.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("account", sa.String(length=64), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("simulator_instance", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("uq_media_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_media_sha256", ["sha256", "source", "account"])
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inputs_sha256", sa.String(length=64), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_campaigns_inputs_sha256"), ["inputs_sha256"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_campaigns_inputs_sha256"))
        batch_op.drop_column("inputs_sha256")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_constraint("uq_media_sha256", type_="unique")
        batch_op.create_unique_constraint("uq_media_sha256", ["sha256", "source"])
        batch_op.drop_column("simulator_instance")
        batch_op.drop_column("account")
