"""Executions, node executions, attempts and events.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "executions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("project", sa.String(255), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("workflow_name", sa.String(512), nullable=False),
        sa.Column("workflow_version", sa.String(255), nullable=False, server_default=""),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("inputs_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("outputs_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("workflow_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("code", sa.Text, nullable=False, server_default="{}"),
        sa.Column("error", sa.Text),
        sa.Column("owner", sa.String(255), nullable=False, server_default=""),
        sa.Column("heartbeat_at", sa.Float),
        sa.UniqueConstraint("project", "domain", "name", name="uq_executions_name"),
    )
    op.create_index("ix_executions_created", "executions", ["created_at"])
    op.create_index("ix_executions_phase", "executions", ["phase"])
    op.create_table(
        "node_executions",
        sa.Column(
            "execution_id",
            sa.String(64),
            sa.ForeignKey("executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("node_id", sa.String(512), primary_key=True),
        sa.Column("name", sa.String(512), nullable=False, server_default=""),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("parent_id", sa.String(512), nullable=False, server_default=""),
        sa.Column("task_name", sa.String(512), nullable=False, server_default=""),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("inputs_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("outputs_uri", sa.Text, nullable=False, server_default=""),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("cache_status", sa.String(32), nullable=False, server_default=""),
    )
    op.create_table(
        "node_attempts",
        sa.Column("execution_id", sa.String(64), primary_key=True),
        sa.Column("node_id", sa.String(512), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("started_at", sa.Float),
        sa.Column("finished_at", sa.Float),
        sa.Column("error", sa.Text),
        sa.Column("backend", sa.String(255), nullable=False, server_default=""),
        sa.Column("log_links", sa.Text, nullable=False, server_default="[]"),
        sa.ForeignKeyConstraint(
            ["execution_id", "node_id"],
            ["node_executions.execution_id", "node_executions.node_id"],
            ondelete="CASCADE",
            name="fk_attempt_node",
        ),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "execution_id",
            sa.String(64),
            sa.ForeignKey("executions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("node_id", sa.String(512), nullable=False, server_default=""),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("phase", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
    )
    op.create_index("ix_events_execution", "events", ["execution_id", "id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("node_attempts")
    op.drop_table("node_executions")
    op.drop_table("executions")
