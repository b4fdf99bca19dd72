"""The registry: entities, code bundles, launch plan states; launch plan columns on executions.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_entities",
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("project", sa.String(255), primary_key=True),
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("version", sa.String(255), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("template_uri", sa.Text, nullable=False),
        sa.Column("bundle_digest", sa.String(64), nullable=False, server_default=""),
        sa.Column("code", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index(
        "ix_registry_entities_created",
        "registry_entities",
        ["kind", "project", "domain", "created_at"],
    )
    op.create_table(
        "code_bundles",
        sa.Column("digest", sa.String(64), primary_key=True),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "launch_plan_states",
        sa.Column("project", sa.String(255), primary_key=True),
        sa.Column("domain", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(512), primary_key=True),
        sa.Column("version", sa.String(255), nullable=False),
        sa.Column("activated_at", sa.Float, nullable=False),
        sa.Column("last_slot", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    # Plain ADD COLUMN (nullable, no default) on both databases: no table rebuild, which on
    # SQLite would cascade-delete the node rows that reference executions.
    op.add_column("executions", sa.Column("launch_plan", sa.String(512)))
    op.add_column("executions", sa.Column("scheduled_at", sa.Float))
    op.add_column("executions", sa.Column("cluster", sa.String(255)))
    op.create_index(
        "ix_executions_launch_plan", "executions", ["project", "domain", "launch_plan"]
    )


def downgrade() -> None:
    op.drop_index("ix_executions_launch_plan", "executions")
    # Plain DROP COLUMN (SQLite >= 3.35), again no table rebuild.
    for column in ("cluster", "scheduled_at", "launch_plan"):
        op.drop_column("executions", column)
    op.drop_table("launch_plan_states")
    op.drop_table("code_bundles")
    op.drop_index("ix_registry_entities_created", "registry_entities")
    op.drop_table("registry_entities")
