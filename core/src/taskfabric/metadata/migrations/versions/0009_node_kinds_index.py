"""An index of an execution's nodes by kind, parent and phase: a map's items counted by phase
and paged without reading their rows, an execution's other nodes without its items.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_node_executions_kind",
        "node_executions",
        ["execution_id", "kind", "parent_id", "phase"],
    )


def downgrade() -> None:
    op.drop_index("ix_node_executions_kind", table_name="node_executions")
