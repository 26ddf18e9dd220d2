"""messages and batches: their frequent updates stay on the page (HOT)

Revision ID: 0009
Revises: 0008
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNJUDGED = "failed_at IS NOT NULL AND retry_class IS NULL"
RESENDS_UNSENT = "previous_link_message_id IS NOT NULL AND link_message_id IS NULL"


def upgrade() -> None:
    # A message is updated about six times (claim, record, attempts, three reports);
    # (campaign_id, status) made every one of them write an entry into each of its five
    # indexes. Without status indexed, and with 30 % of each page kept free, all but
    # the one that records the messageId stay on their page and touch no index (HOT).
    # Queries by campaign use the unique key's leading column; the resend planner's
    # unjudged failures and waiting resends get small partial indexes.
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index("ix_messages_campaign_status")
        batch_op.create_index(
            "ix_messages_unjudged_failures",
            ["campaign_id"],
            unique=False,
            postgresql_where=sa.text(UNJUDGED),
            sqlite_where=sa.text(UNJUDGED),
        )
        batch_op.create_index(
            "ix_messages_resends_unsent",
            ["campaign_id"],
            unique=False,
            postgresql_where=sa.text(RESENDS_UNSENT),
            sqlite_where=sa.text(RESENDS_UNSENT),
        )
    if op.get_context().dialect.name == "postgresql":
        # New pages only; a full rewrite (VACUUM FULL) is the operator's choice.
        op.execute("ALTER TABLE messages SET (fillfactor = 70)")
        # A batch is updated three times; its hand-out changes no indexed column.
        op.execute("ALTER TABLE batches SET (fillfactor = 80)")


def downgrade() -> None:
    if op.get_context().dialect.name == "postgresql":
        op.execute("ALTER TABLE batches RESET (fillfactor)")
        op.execute("ALTER TABLE messages RESET (fillfactor)")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_messages_resends_unsent",
            postgresql_where=sa.text(RESENDS_UNSENT),
            sqlite_where=sa.text(RESENDS_UNSENT),
        )
        batch_op.drop_index(
            "ix_messages_unjudged_failures",
            postgresql_where=sa.text(UNJUDGED),
            sqlite_where=sa.text(UNJUDGED),
        )
        batch_op.create_index("ix_messages_campaign_status", ["campaign_id", "status"])
