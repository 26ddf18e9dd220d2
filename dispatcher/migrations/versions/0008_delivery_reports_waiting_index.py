"""delivery_reports: one partial index over the reports still waiting to be applied

Revision ID: 0008
Revises: 0007
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WAITING = "state IN ('received', 'unmatched')"


def upgrade() -> None:
    # Every stored body paid for four index entries and its 'applied' update for four
    # more; only the few reports still waiting are ever looked up (by refId, or all of
    # them by the sweep), so one partial index holds them, and an applied report's new
    # row version enters the primary key alone.
    with op.batch_alter_table("delivery_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_reports_state")
        batch_op.drop_index("ix_delivery_reports_ref_id")
        batch_op.drop_index("ix_delivery_reports_link_message_id")
        batch_op.create_index(
            "ix_delivery_reports_waiting",
            ["ref_id"],
            unique=False,
            postgresql_where=sa.text(WAITING),
            sqlite_where=sa.text(WAITING),
        )


def downgrade() -> None:
    with op.batch_alter_table("delivery_reports", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_delivery_reports_waiting",
            postgresql_where=sa.text(WAITING),
            sqlite_where=sa.text(WAITING),
        )
        batch_op.create_index("ix_delivery_reports_link_message_id", ["link_message_id"])
        batch_op.create_index("ix_delivery_reports_ref_id", ["ref_id"])
        batch_op.create_index("ix_delivery_reports_state", ["state"])
