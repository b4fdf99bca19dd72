"""Recent pushbacks of each resource pool (who, when, how long), for the pools' views.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL; on SQLite exactly INTEGER, which AUTOINCREMENT needs.
_Token = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pool_pushbacks",
        sa.Column("id", _Token, primary_key=True, autoincrement=True),
        sa.Column("pool", sa.String(255), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("seconds", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False),
        sa.Column("execution_id", sa.String(64), nullable=False, server_default=""),
        sa.Column("node_id", sa.String(512), nullable=False, server_default=""),
        sa.Column("project", sa.String(255), nullable=False, server_default=""),
        sa.Column("domain", sa.String(255), nullable=False, server_default=""),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_pool_pushbacks_pool", "pool_pushbacks", ["pool", "id"])


def downgrade() -> None:
    op.drop_index("ix_pool_pushbacks_pool", table_name="pool_pushbacks")
    op.drop_table("pool_pushbacks")
