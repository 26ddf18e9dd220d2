"""messages: WhatsApp's message id and pricing from status reports; replies to them

Revision ID: 0012
Revises: 0011
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Seed 004 'Message Status Notifications' (DLR Example#1): customParameters carry
    # waMessageId and pricingModel, pricingCategory, pricingBillable, pricingType.
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("wa_message_id", sa.String(128), nullable=True))
        batch.add_column(sa.Column("pricing_model", sa.String(32), nullable=True))
        batch.add_column(sa.Column("pricing_category", sa.String(32), nullable=True))
        batch.add_column(sa.Column("pricing_type", sa.String(32), nullable=True))
        batch.add_column(sa.Column("pricing_billable", sa.Boolean(), nullable=True))
    op.create_table(
        "whatsapp_message_ids",
        sa.Column("wa_message_id", sa.String(128), nullable=False),
        sa.Column("message_id", _BIG_ID, nullable=False),
        sa.Column("campaign_id", _BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("wa_message_id", name=op.f("pk_whatsapp_message_ids")),
    )
    op.create_table(
        "replies",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("campaign_id", _BIG_ID, nullable=False),
        sa.Column("message_id", _BIG_ID, nullable=False),
        sa.Column("incoming_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("button", sa.Text(), nullable=True),
        sa.Column("label", sa.Text(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replies")),
        sa.UniqueConstraint("incoming_id", name=op.f("uq_replies_incoming_id")),
    )
    op.create_index(op.f("ix_replies_campaign_id"), "replies", ["campaign_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_replies_campaign_id"), table_name="replies")
    op.drop_table("replies")
    op.drop_table("whatsapp_message_ids")
    with op.batch_alter_table("messages") as batch:
        for column in ("pricing_billable", "pricing_type", "pricing_category",
                       "pricing_model", "wa_message_id"):  # fmt: skip
            batch.drop_column(column)
