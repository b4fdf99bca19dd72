"""Resource pools: pools, leases, grants, waiters.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# BIGINT on PostgreSQL; on SQLite exactly INTEGER, which AUTOINCREMENT needs.
_Token = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pools",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("rate", sa.Float),
        sa.Column("burst", sa.Integer, nullable=False),
        sa.Column("lease_ttl", sa.Float, nullable=False),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("refilled_at", sa.Float, nullable=False),
        sa.Column("paused_until", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "pool_leases",
        sa.Column("token", _Token, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(512), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False, server_default="0"),
        sa.Column("acquired_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.UniqueConstraint("execution_id", "node_id", "attempt", name="uq_pool_leases_holder"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "pool_grants",
        sa.Column("pool", sa.String(255), primary_key=True),
        sa.Column("token", _Token, primary_key=True),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "pool_waiters",
        sa.Column("seq", _Token, primary_key=True, autoincrement=True),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(512), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("weights", sa.Text, nullable=False),
        sa.Column("enqueued_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
        sa.Column("ttl", sa.Float, nullable=False),
        sa.Column("skips", sa.Integer, nullable=False, server_default="0"),
        sa.UniqueConstraint("execution_id", "node_id", "attempt", name="uq_pool_waiters_holder"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_pool_waiters_owner", "pool_waiters", ["owner"])
    op.create_index("ix_pool_waiters_expires", "pool_waiters", ["expires_at"])
    op.create_table(
        "pool_waits",
        sa.Column("pool", sa.String(255), primary_key=True),
        sa.Column("seq", _Token, primary_key=True),
        sa.Column("weight", sa.Integer, nullable=False),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
    )
    op.create_index("ix_pool_waits_seq", "pool_waits", ["seq"])


def downgrade() -> None:
    op.drop_index("ix_pool_waits_seq", "pool_waits")
    op.drop_table("pool_waits")
    op.drop_index("ix_pool_waiters_expires", "pool_waiters")
    op.drop_index("ix_pool_waiters_owner", "pool_waiters")
    op.drop_table("pool_waiters")
    op.drop_table("pool_grants")
    op.drop_table("pool_leases")
    op.drop_table("pools")
