"""SQLite: a grant on a free pool and a release that nobody waits behind, on bare sqlite3.

An acquire-and-release cycle is two commits of a few statements each; SQLite runs those
statements in microseconds, so what Python does around them (SQLAlchemy's transaction
bookkeeping, named parameters, a dict per row) is a large share of the cycle. Here the two
transactions run on a connection of the manager's own in autocommit mode (``BEGIN
IMMEDIATE`` and ``COMMIT`` written out), with positional parameters and statements built
once. The same methods as ``_pgfast.PgOneTrip``; the manager decides the same way for both.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from taskfabric.pools._hot import LOCK_USAGE, PoolRow, split_lock_usage

_LEASE_COLUMNS = (
    "execution_id",
    "node_id",
    "attempt",
    "project",
    "domain",
    "owner",
    "priority",
    "acquired_at",
    "expires_at",
    "ttl",
    "delivered",
)
_INSERT_LEASE = (
    f"INSERT INTO pool_leases ({', '.join(_LEASE_COLUMNS)}) VALUES "
    f"({', '.join('?' * len(_LEASE_COLUMNS))}) "
    "ON CONFLICT (execution_id, node_id, attempt) DO NOTHING RETURNING token"
)
_INSERT_GRANT = (
    "INSERT INTO pool_grants (token, pool, weight, project, domain) VALUES (?, ?, ?, ?, ?)"
)
# refilled_at never moves back (see HotSql.save_bucket)
_SAVE_BUCKET = (
    "UPDATE pools SET tokens = ?, refilled_at = CASE WHEN refilled_at > ? THEN refilled_at "
    "ELSE ? END WHERE name = ?"
)


def _marks(count: int) -> str:
    return ", ".join("?" * count)


@functools.cache
def _release_sql(tokens: int, pools: int) -> str:
    return (
        f"DELETE FROM pool_leases WHERE token IN ({_marks(tokens)}) AND NOT EXISTS (SELECT 1 "
        f"FROM pool_waits WHERE pool IN ({_marks(pools)})) RETURNING token"
    )


@functools.cache
def _release_grants_sql(pools: int, tokens: int) -> str:
    marks = _marks(tokens)
    return f"DELETE FROM pool_grants WHERE pool IN ({_marks(pools)}) AND token IN ({marks})"


@functools.cache
def _waiting_sql(pools: int) -> str:
    return f"SELECT EXISTS (SELECT 1 FROM pool_waits WHERE pool IN ({_marks(pools)}))"


def insert_lease(
    cur: Any,
    values: Mapping[str, Any],
    weights: Mapping[str, int],
    buckets: Mapping[str, float],
    now: float,
) -> int | None:
    """In the write transaction of ``cur``: insert a lease and its grants, and take the
    tokens of ``buckets`` (pool -> tokens left) when it was inserted; the new lease's
    token, or ``None`` when the holder has a lease already (nothing was written then)."""
    cur.execute(_INSERT_LEASE, tuple(values[c] for c in _LEASE_COLUMNS))
    row = cur.fetchone()
    if row is None:
        return None
    token = int(row[0])
    project, domain = values["project"], values["domain"]
    for name, weight in weights.items():
        cur.execute(_INSERT_GRANT, (token, name, weight, project, domain))
    for name, tokens in buckets.items():
        cur.execute(_SAVE_BUCKET, (tokens, now, now, name))
    return token


def release_unless_waiting(
    cur: Any, tokens: Sequence[int], pools: Sequence[str]
) -> tuple[list[int], bool]:
    """In the write transaction of ``cur``: delete the leases of ``tokens`` unless somebody
    waits in one of ``pools`` (their pools). Returns the tokens deleted, and whether
    somebody waits (then nothing was deleted)."""
    count = len(pools)
    cur.execute(_release_sql(len(tokens), count), (*tokens, *pools))
    found = [int(token) for (token,) in cur.fetchall()]
    if found:
        cur.execute(_release_grants_sql(count, len(found)), (*pools, *found))
        return found, False
    # nothing deleted: stale tokens, or somebody waits
    cur.execute(_waiting_sql(count), tuple(pools))
    (waiting,) = cur.fetchone()
    return [], bool(waiting)


class SqliteDirect:
    """The hot path's transactions on a sqlite3 connection of their own (see the module
    docstring). Not thread-safe: the manager calls it under its connection lock."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._cur: Any = None
        self._cache: dict[tuple[str, int, int], str] = {}

    def _cursor(self) -> Any:
        if self._conn is None:
            proxied = self._engine.raw_connection()
            proxied.detach()  # ours alone: it stays in autocommit mode, out of the pool
            conn = proxied.dbapi_connection
            assert conn is not None
            conn.rollback()
            conn.isolation_level = None  # transactions written out: BEGIN IMMEDIATE, COMMIT
            self._conn = conn
            self._cur = conn.cursor()
        return self._cur

    def _sql(self, kind: str, first: int, second: int, template: str) -> str:
        key = (kind, first, second)
        sql = self._cache.get(key)
        if sql is None:
            sql = self._cache[key] = template.format(first=_marks(first), second=_marks(second))
        return sql

    def abandon(self) -> None:
        """After an error: roll back what is open; a connection in doubt is closed."""
        conn = self._conn
        if conn is None:
            return
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except Exception:
            self.close()

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = self._cur = None

    # -- a grant --------------------------------------------------------------------------

    def lock_with_usage(
        self, names: Sequence[str]
    ) -> tuple[list[PoolRow], tuple[list[tuple[str, str, str, int]], bool]]:
        """Begin a write transaction and read the rows of ``names`` with their usage (as
        ``HotSql.lock_with_usage``). ``insert_and_commit`` or ``rollback`` ends it."""
        cur = self._cursor()
        count = len(names)
        sql = self._sql(
            "lock-usage",
            count,
            0,
            LOCK_USAGE.replace("{names}", "{first}"),
        )
        cur.execute("BEGIN IMMEDIATE")
        cur.execute(sql, (*names, *names, *names))
        rows, held, waiting = split_lock_usage(cur.fetchall())
        return rows, (held, waiting)

    def rollback(self) -> None:
        self._cursor().execute("ROLLBACK")

    def insert_and_commit(
        self,
        values: Mapping[str, Any],
        weights: Mapping[str, int],
        buckets: Mapping[str, float],
        now: float,
    ) -> int | None:
        """Insert a lease and its grants, take the tokens of ``buckets`` (pool -> tokens left)
        when it was inserted, and commit; the new lease's token, or ``None`` when the holder
        has a lease already (nothing changed then)."""
        cur = self._cursor()
        token = insert_lease(cur, values, weights, buckets, now)
        cur.execute("ROLLBACK" if token is None else "COMMIT")
        return token

    # -- a release ------------------------------------------------------------------------

    def release(self, tokens: Sequence[int], pools: Sequence[str]) -> tuple[list[int], bool]:
        """Release the leases of ``tokens`` unless somebody waits in one of ``pools`` (their
        pools): returns the tokens released, and whether somebody waits (then nothing was
        released)."""
        cur = self._cursor()
        cur.execute("BEGIN IMMEDIATE")
        found, waiting = release_unless_waiting(cur, tokens, pools)
        cur.execute("COMMIT" if found else "ROLLBACK")
        return found, waiting
