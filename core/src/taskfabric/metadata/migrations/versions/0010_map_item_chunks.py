"""A map's items packed, 64 to a row (`metadata/_items.py`): a map of a million items is
15,625 rows instead of a million item rows and as many attempt rows. Items recorded before
keep their rows, which the store reads as before; an execution resumed across the upgrade
carries its items' rows into chunks when its map is queued again.

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "map_item_chunks",
        sa.Column(
            "execution_id",
            sa.String(64),
            sa.ForeignKey("executions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("map_id", sa.String(512), primary_key=True),
        sa.Column("chunk", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("name", sa.String(512), nullable=False, server_default=""),
        sa.Column("task_name", sa.String(512), nullable=False, server_default=""),
        sa.Column("backend", sa.String(255), nullable=False, server_default=""),
        sa.Column("message", sa.Text, nullable=False, server_default=""),
        sa.Column("bases", sa.Text, nullable=False, server_default="[]"),
        sa.Column("extras", sa.Text, nullable=False, server_default="{}"),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )


def downgrade() -> None:
    """Items back into rows (node_executions, and their current attempt in node_attempts),
    then the table dropped."""
    from taskfabric.metadata._items import SELECT, Chunk

    conn = op.get_bind()
    nodes = sa.table(
        "node_executions",
        *(
            sa.column(c)
            for c in (
                "execution_id", "node_id", "name", "kind", "parent_id", "task_name", "phase",
                "attempts", "inputs_uri", "outputs_uri", "started_at", "finished_at", "message",
                "cache_status",
            )
        ),
    )
    attempts = sa.table(
        "node_attempts",
        *(
            sa.column(c)
            for c in (
                "execution_id", "node_id", "attempt", "phase", "started_at", "finished_at",
                "backend",
            )
        ),
    )
    for row in conn.exec_driver_sql(SELECT).all():
        chunk = Chunk.from_row(tuple(row))
        node_rows, attempt_rows = [], []
        for slot, values in chunk.items():
            if chunk.has_rows(slot):
                continue
            rec = chunk.node(slot, values)
            node_rows.append({k: v for k, v in vars(rec).items() if k != "error"})
            found = chunk.attempt(slot, values)
            if found is not None:
                attempt_rows.append(
                    {
                        k: v
                        for k, v in vars(found).items()
                        if k not in ("error", "log_links", "handle")
                    }
                )
        if node_rows:
            conn.execute(nodes.insert(), node_rows)
        if attempt_rows:
            conn.execute(attempts.insert(), attempt_rows)
    op.drop_table("map_item_chunks")
