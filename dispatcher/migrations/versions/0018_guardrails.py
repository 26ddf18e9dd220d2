"""guardrails: why a guardrail paused a campaign, its canary, its forecast, and the
alerts waiting to be delivered

Revision ID: 0018
Revises: 0017
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as table:
        table.add_column(sa.Column("paused_by", sa.JSON(), nullable=True))
        table.add_column(sa.Column("guard_since", sa.DateTime(timezone=True), nullable=True))
        table.add_column(sa.Column("canary", sa.JSON(), nullable=True))
        table.add_column(sa.Column("forecast", sa.JSON(), nullable=True))
    op.create_table(
        "alerts",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("campaign_id", _BIG_ID, nullable=True),
        sa.Column("dedupe_key", sa.String(160), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_alerts_dedupe_key")),
    )
    op.create_index(
        "ix_alerts_due",
        "alerts",
        ["next_attempt_at"],
        postgresql_where=sa.text("sent_at IS NULL"),
        sqlite_where=sa.text("sent_at IS NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_alerts_due", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("campaigns") as table:
        table.drop_column("forecast")
        table.drop_column("canary")
        table.drop_column("guard_since")
        table.drop_column("paused_by")
