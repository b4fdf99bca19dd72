"""Tables of the metadata database (SQLAlchemy Core).

Times are UTC epoch seconds (float): portable across SQLite and PostgreSQL and cheap to
write on the engine's hot path. Error and code-location documents are JSON text.
Any change here needs an Alembic migration in `migrations/versions/`, a new HEAD in
`_revision.py`, and the same change in `_lite.py` (the SQLite run path's own SQL).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

executions = sa.Table(
    "executions",
    metadata,
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
    # Set by launch plans (migration 0004): "name:version", the schedule slot, the cluster.
    sa.Column("launch_plan", sa.String(512)),
    sa.Column("scheduled_at", sa.Float),
    sa.Column("cluster", sa.String(255)),
    sa.UniqueConstraint("project", "domain", "name", name="uq_executions_name"),
)
sa.Index("ix_executions_created", executions.c.created_at)
sa.Index("ix_executions_phase", executions.c.phase)

node_executions = sa.Table(
    "node_executions",
    metadata,
    sa.Column(
        "execution_id",
        sa.String(64),
        sa.ForeignKey("executions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("node_id", sa.String(512), primary_key=True),
    sa.Column("name", sa.String(512), nullable=False, server_default=""),
    # task, map, map_item, branch, workflow
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
    # On SQLite, rows stored in the key's b-tree, no separate index of it: one b-tree less
    # for each commit to write a page of (migration 0011). Likewise node_attempts.
    sqlite_with_rowid=False,
)
# A map's items counted by phase and paged from the index alone; the other nodes of an
# execution read without its items (migration 0009).
sa.Index(
    "ix_node_executions_kind",
    node_executions.c.execution_id,
    node_executions.c.kind,
    node_executions.c.parent_id,
    node_executions.c.phase,
)

node_attempts = sa.Table(
    "node_attempts",
    metadata,
    sa.Column("execution_id", sa.String(64), primary_key=True),
    sa.Column("node_id", sa.String(512), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
    sa.Column("phase", sa.String(32), nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("error", sa.Text),
    sa.Column("backend", sa.String(255), nullable=False, server_default=""),
    sa.Column("log_links", sa.Text, nullable=False, server_default="[]"),
    # The backend's external handle of the attempt's work (migration 0007), written only by
    # MetadataStore.record_attempt_handle: an engine resuming the execution re-attaches by it.
    sa.Column("handle", sa.Text, nullable=False, server_default=""),
    sa.ForeignKeyConstraint(
        ["execution_id", "node_id"],
        ["node_executions.execution_id", "node_executions.node_id"],
        ondelete="CASCADE",
        name="fk_attempt_node",
    ),
    sqlite_with_rowid=False,
)

# Every phase transition, in order: the audit trail of an execution.
events = sa.Table(
    "events",
    metadata,
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
sa.Index("ix_events_execution", events.c.execution_id, events.c.id)

# The data catalog: one row per cached task result, pointing at outputs in the blob store.
cache_entries = sa.Table(
    "cache_entries",
    metadata,
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
sa.Index(
    "ix_cache_task", cache_entries.c.project, cache_entries.c.domain, cache_entries.c.task_name
)

# Serialized caching: the one computation of a missing entry that others wait for.
cache_reservations = sa.Table(
    "cache_reservations",
    metadata,
    sa.Column("key", sa.String(128), primary_key=True),
    sa.Column("owner", sa.String(512), nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

# A map's items, `_items.CHUNK` to a row, packed (migration 0010; see `_items`): items are
# materialized from these by the store's reads. Items recorded before keep their rows in
# node_executions, as does an item with an error, a message, a retry or a handle.
map_item_chunks = sa.Table(
    "map_item_chunks",
    metadata,
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
