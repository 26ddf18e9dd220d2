"""identity over time: where each link came from, a BSUID's portfolio, usernames, and
the links changes retired

Revision ID: 0017
Revises: 0016
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("identities") as table:
        table.add_column(sa.Column("source", sa.String(200), nullable=False, server_default=""))
        table.add_column(sa.Column("portfolio", sa.String(64), nullable=False, server_default=""))
        table.add_column(sa.Column("username", sa.String(64), nullable=True))
    op.create_index(
        "ix_identities_shared",
        "identities",
        ["learned_at"],
        postgresql_where=sa.text("learned_from = 'contacts'"),
        sqlite_where=sa.text("learned_from = 'contacts'"),
    )
    op.create_table(
        "retired_identities",
        sa.Column("id", _BIG_ID, nullable=False),
        sa.Column("identifier", sa.String(160), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("person_key", sa.String(160), nullable=False),
        sa.Column("learned_from", sa.String(32), nullable=False),
        sa.Column("learned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(200), nullable=False),
        sa.Column("portfolio", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=True),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_by", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retired_identities")),
    )
    op.create_index(op.f("ix_retired_identities_identifier"), "retired_identities", ["identifier"])
    op.create_index(op.f("ix_retired_identities_person_key"), "retired_identities", ["person_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_retired_identities_person_key"), table_name="retired_identities")
    op.drop_index(op.f("ix_retired_identities_identifier"), table_name="retired_identities")
    op.drop_table("retired_identities")
    op.drop_index("ix_identities_shared", table_name="identities")
    with op.batch_alter_table("identities") as table:
        table.drop_column("username")
        table.drop_column("portfolio")
        table.drop_column("source")
