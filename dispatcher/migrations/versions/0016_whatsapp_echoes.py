"""whatsapp_echoes: what the business sent people from the WhatsApp Business app

Revision ID: 0016
Revises: 0015
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Meta's ``smb_message_echoes`` (seed 003; ``to_user_id`` from seed 000): one row
    # an echo, found by the person it went to; never the message's content.
    op.create_table(
        "whatsapp_echoes",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("business_number", sa.String(32), nullable=False),
        sa.Column("recipient", sa.String(160), nullable=False),
        sa.Column("recipient_user_id", sa.String(160), nullable=True),
        sa.Column("wa_message_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("original_message_id", sa.String(128), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_id", _BIG_ID, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_whatsapp_echoes")),
        sa.UniqueConstraint("wa_message_id", name=op.f("uq_whatsapp_echoes_wa_message_id")),
    )
    op.create_index(op.f("ix_whatsapp_echoes_recipient"), "whatsapp_echoes", ["recipient"])
    op.create_index(
        op.f("ix_whatsapp_echoes_recipient_user_id"), "whatsapp_echoes", ["recipient_user_id"]
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_whatsapp_echoes_recipient_user_id"), table_name="whatsapp_echoes")
    op.drop_index(op.f("ix_whatsapp_echoes_recipient"), table_name="whatsapp_echoes")
    op.drop_table("whatsapp_echoes")
