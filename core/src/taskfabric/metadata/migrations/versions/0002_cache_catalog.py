"""The data catalog: cache entries and reservations.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cache_entries",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("task_name", sa.String(512), nullable=False),
        sa.Column("cache_version", sa.String(255), nullable=False),
        sa.Column("interface_hash", sa.String(128), nullable=False),
        sa.Column("inputs_hash", sa.String(128), nullable=False),
        sa.Column("outputs_uri", sa.Text, nullable=False),
        sa.Column("inputs_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("execution_id", sa.String(64), nullable=False),
        sa.Column("node_id", sa.String(512), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
    )
    op.create_index("ix_cache_task", "cache_entries", ["project", "domain", "task_name"])
    op.create_table(
        "cache_reservations",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("owner", sa.String(512), nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("cache_reservations")
    op.drop_index("ix_cache_task", "cache_entries")
    op.drop_table("cache_entries")
