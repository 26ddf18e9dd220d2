"""campaign inputs and reports stored in the database, content-addressed and chunked

Revision ID: 0013
Revises: 0012
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # One row per distinct content (a list or a video sent by many campaigns is kept
    # once); its bytes in chunks, so neither side ever holds a whole file in memory.
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_blobs")),
    )
    op.create_table(
        "blob_chunks",
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(
            ["sha256"],
            ["blobs.sha256"],
            name=op.f("fk_blob_chunks_sha256_blobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("sha256", "seq", name=op.f("pk_blob_chunks")),
    )
    op.create_table(
        "campaign_files",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("campaign_id", _BIG_ID, nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_campaign_files_campaign_id_campaigns"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["blobs.sha256"], name=op.f("fk_campaign_files_sha256_blobs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_files")),
        sa.UniqueConstraint(
            "campaign_id", "role", "name", name=op.f("uq_campaign_files_campaign_id")
        ),
    )
    op.create_index(op.f("ix_campaign_files_sha256"), "campaign_files", ["sha256"])


def downgrade() -> None:
    op.drop_index(op.f("ix_campaign_files_sha256"), table_name="campaign_files")
    op.drop_table("campaign_files")
    op.drop_table("blob_chunks")
    op.drop_table("blobs")
