"""The pool tables, on the metadata database's ``MetaData`` (migration 0003 creates them).

- ``pools``: one row per pool, written from the config of each manager that opens it; holds the
  token bucket (``tokens`` at ``refilled_at``) and a pushback (``paused_until``). On PostgreSQL
  these rows are the locks: every grant locks the rows of its pools (``FOR UPDATE``, by name).
- ``pool_leases``: one row per lease; ``token`` is the fencing token (autoincrement, never
  reused: ``AUTOINCREMENT`` on SQLite, a sequence on PostgreSQL). ``delivered`` is false for a
  lease granted to a waiter by another call until its owner picks it up (``poll``).
- ``pool_grants``: the slots of one lease in one pool; in-use counts are sums over these rows.
- ``pool_waiters``: one row per queued request; ``seq`` is its arrival order.
- ``pool_waits``: the pools of one waiter, so that a pool's queue is one index range.
"""

from __future__ import annotations

import sqlalchemy as sa

from taskfabric.metadata._schema import metadata

# BIGINT on PostgreSQL; on SQLite exactly INTEGER, which AUTOINCREMENT needs.
_Token = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

pools = sa.Table(
    "pools",
    metadata,
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

pool_leases = sa.Table(
    "pool_leases",
    metadata,
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

pool_grants = sa.Table(
    "pool_grants",
    metadata,
    sa.Column("pool", sa.String(255), primary_key=True),
    sa.Column("token", _Token, primary_key=True),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("domain", sa.String(255), nullable=False),
    sqlite_with_rowid=False,
)

pool_waiters = sa.Table(
    "pool_waiters",
    metadata,
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
sa.Index("ix_pool_waiters_owner", pool_waiters.c.owner)
sa.Index("ix_pool_waiters_expires", pool_waiters.c.expires_at)

pool_waits = sa.Table(
    "pool_waits",
    metadata,
    sa.Column("pool", sa.String(255), primary_key=True),
    sa.Column("seq", _Token, primary_key=True),
    sa.Column("weight", sa.Integer, nullable=False),
    sa.Column("project", sa.String(255), nullable=False),
    sa.Column("priority", sa.Integer, nullable=False),
)
sa.Index("ix_pool_waits_seq", pool_waits.c.seq)

# Recent pushbacks (a 429 and its Retry-After, a throttling error), newest last, kept per
# pool up to `_pushbacks.KEEP`: who was pushed back, when, and for how long.
pool_pushbacks = sa.Table(
    "pool_pushbacks",
    metadata,
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
sa.Index("ix_pool_pushbacks_pool", pool_pushbacks.c.pool, pool_pushbacks.c.id)
