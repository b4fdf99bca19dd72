"""PostgreSQL: a grant on a free pool in two round trips and a release in one.

Each statement of the hot path costs a round trip to the server, and psycopg adds one for
``BEGIN`` and one for ``COMMIT``: nine per acquire-and-release cycle, each a wake-up of the
server's process and of ours, which on a busy machine costs far more than the statements.
Here the whole transaction goes as few query strings as its decisions allow, in the simple
query protocol (parameters bound by psycopg on the client, several statements per string), on
a connection of the manager's own in autocommit mode, so that ``BEGIN`` and ``COMMIT`` travel
inside those strings:

- grant: ``BEGIN; lock the pools; read their usage`` (the usage is a statement of its own,
  so it reads after the lock was granted), then, decided in Python, ``insert; COMMIT``.
  On pools whose only limit for the request is slots (no rate, no cap of its project or
  domain), in one round trip: ``BEGIN; lock the pools; insert if nobody waits, none is
  paused and it fits; COMMIT`` (`grant_if_fits`); when that inserts nothing, the two;
- release: ``BEGIN; lock the lease's pools; delete the lease unless somebody waits there;
  COMMIT``. When somebody waits nothing is deleted, and the caller runs the release with its
  pass the usual way (every pool locked, in name order).

Locks are taken in name order as everywhere. Any error rolls back and the caller takes the
usual path, which has its own retries and reconnects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Engine

from taskfabric.pools._hot import PoolRow

_LOCK = (
    "SELECT name, tokens, refilled_at, paused_until FROM pools WHERE name IN ({names}) "
    "ORDER BY name FOR UPDATE"
)
_USAGE = (
    "SELECT pool, project, domain, SUM(weight), 0 FROM pool_grants "
    "WHERE pool IN ({names}) GROUP BY pool, project, domain "
    "UNION ALL SELECT * FROM (SELECT pool, '', '', 0, 1 FROM pool_waits "
    "WHERE pool IN ({names}) LIMIT 1) AS waiting"
)
_LEASE_COLUMNS = (
    ("execution_id", "text"),
    ("node_id", "text"),
    ("attempt", "integer"),
    ("project", "text"),
    ("domain", "text"),
    ("owner", "text"),
    ("priority", "integer"),
    ("acquired_at", "float8"),
    ("expires_at", "float8"),
    ("ttl", "float8"),
    ("delivered", "boolean"),
)


def _args(first: int, count: int) -> str:
    return ", ".join(f"${i}" for i in range(first, first + count))


class PgOneTrip:
    """The hot path's transactions on a connection of their own (see the module docstring).
    Not thread-safe: the manager calls it under its connection lock."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._conn: Any = None
        self._cur: Any = None
        self._prepared: set[str] = set()

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            import psycopg

            # A connection of our own, not one from SQLAlchemy's pool: psycopg prepares a
            # statement on the server once it ran 5 times on a connection, and on a ROLLBACK
            # it drops every prepared statement of the session (DEALLOCATE ALL), ours too.
            # Here psycopg prepares nothing, so it never deallocates anything.
            cargs, cparams = self._engine.dialect.create_connect_args(self._engine.url)
            conn = psycopg.connect(*cargs, **cparams, autocommit=True, prepare_threshold=None)
            self._conn = conn
            self._cur = psycopg.ClientCursor(conn)
            self._prepared = set()
        return self._cur

    def _statement(self, name: str, types: Sequence[str], body: str) -> str:
        """``EXECUTE name(%s, ...)``; the statement is prepared on this connection first
        (once, in a round trip of its own outside any transaction): the strings here go
        in the simple protocol, which would otherwise plan every statement every time."""
        cur = self._cursor()
        if name not in self._prepared:
            cur.execute(f"PREPARE {name} ({', '.join(types)}) AS {body}")
            self._prepared.add(name)
        return f"EXECUTE {name}({', '.join(['%s'] * len(types))})"

    def _lock_sql(self, count: int) -> str:
        return self._statement(
            f"tf_pools_lock_{count}", ["text"] * count, _LOCK.replace("{names}", _args(1, count))
        )

    def abandon(self) -> None:
        """After an error: roll back what is open; a connection in doubt is closed."""
        conn = self._conn
        if conn is None:
            return
        try:
            if not conn.closed and conn.info.transaction_status != 0:  # not IDLE
                conn.rollback()
        except Exception:
            conn.close()
        if conn.closed:
            self._conn = self._cur = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = self._cur = None

    # -- a grant --------------------------------------------------------------------------

    def lock_with_usage(
        self, names: Sequence[str]
    ) -> tuple[list[PoolRow], tuple[list[tuple[str, str, str, int]], bool]]:
        """Begin a transaction, lock the rows of ``names`` and read their usage (one round
        trip). The transaction stays open: ``insert_and_commit`` or ``rollback`` ends it."""
        count = len(names)
        lock = self._lock_sql(count)
        usage = self._statement(
            f"tf_pools_usage_{count}", ["text"] * count, _USAGE.replace("{names}", _args(1, count))
        )
        cur = self._cursor()
        cur.execute(f"BEGIN; {lock}; {usage}", [*names, *names])
        cur.nextset()  # past BEGIN
        rows = [PoolRow(*row) for row in cur.fetchall()]
        cur.nextset()
        held, waiting = [], False
        for pool, project, domain, total, is_waiter in cur.fetchall():
            if is_waiter:
                waiting = True
            else:
                held.append((pool, project, domain, int(total)))
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
        when it was inserted, and commit (one round trip); the new lease's token, or
        ``None`` when the holder has a lease already (nothing changed then)."""
        names = list(weights)
        count, kept = len(names), len(buckets)
        columns = len(_LEASE_COLUMNS)
        first_pool = columns + 1
        first_bucket = first_pool + 2 * count
        pairs = ", ".join(f"(${first_pool + i}, ${first_pool + count + i})" for i in range(count))
        bucket_sql = ""
        if kept:
            now_arg = first_bucket + 2 * kept
            rows = ", ".join(
                f"(${first_bucket + i}, ${first_bucket + kept + i})" for i in range(kept)
            )
            # refilled_at never moves back (see HotSql.save_bucket); only when a lease was made
            bucket_sql = (
                ", buckets AS (UPDATE pools SET tokens = b.tokens, refilled_at = CASE WHEN "
                f"pools.refilled_at > ${now_arg} THEN pools.refilled_at ELSE ${now_arg} END "
                f"FROM lease, (VALUES {rows}) AS b (name, tokens) WHERE pools.name = b.name)"
            )
        body = (
            f"WITH lease AS (INSERT INTO pool_leases ({', '.join(c for c, _ in _LEASE_COLUMNS)}) "
            f"VALUES ({_args(1, columns)}) ON CONFLICT (execution_id, node_id, attempt) DO "
            "NOTHING RETURNING token), grants AS (INSERT INTO pool_grants (token, pool, weight, "
            "project, domain) SELECT lease.token, asked.pool, asked.weight, $4, $5 FROM lease, "
            f"(VALUES {pairs}) AS asked (pool, weight)){bucket_sql} SELECT token FROM lease"
        )
        types = [t for _, t in _LEASE_COLUMNS] + ["text"] * count + ["integer"] * count
        if kept:
            types += ["text"] * kept + ["float8"] * kept + ["float8"]
        insert = self._statement(f"tf_pools_grant_{count}_{kept}", types, body)
        params: list[Any] = [values[c] for c, _ in _LEASE_COLUMNS]
        params += names + [weights[name] for name in names]
        if kept:
            ordered = sorted(buckets)
            params += ordered + [float(buckets[name]) for name in ordered] + [now]
        cur = self._cursor()
        cur.execute(f"{insert}; COMMIT", params)
        row = cur.fetchone()
        return None if row is None else int(row[0])

    def grant_if_fits(
        self,
        values: Mapping[str, Any],
        weights: Mapping[str, int],
        capacities: Mapping[str, int],
        now: float,
    ) -> int | None:
        """Lock the pools of ``weights``, insert a lease and its grants when nobody waits in
        them, none is paused at ``now`` and each has room for its weight within
        ``capacities`` (pool -> slots it may grant), and commit: one round trip. The new
        lease's token, or ``None`` when nothing was inserted (it did not fit, somebody
        waits, a pool row is missing, the holder has a lease): decide the usual way then.
        Only for requests whose pools limit them by slots alone (the caller checks)."""
        names = sorted(weights)
        count = len(names)
        columns = len(_LEASE_COLUMNS)
        first = columns + 1  # then count names, count weights, count capacities, now
        asked = ", ".join(
            f"(${first + i}, ${first + count + i}, ${first + 2 * count + i})" for i in range(count)
        )
        now_arg = first + 3 * count
        fits = (
            f"NOT EXISTS (SELECT 1 FROM pool_waits WHERE pool IN ({_args(first, count)})) AND "
            f"(SELECT count(*) FROM pools WHERE name IN ({_args(first, count)}) AND "
            f"paused_until <= ${now_arg}) = {count} AND NOT EXISTS (SELECT 1 FROM asked WHERE "
            "(SELECT COALESCE(SUM(g.weight), 0) FROM pool_grants g WHERE g.pool = asked.pool) "
            "+ asked.weight > asked.cap)"
        )
        body = (
            f"WITH asked (pool, weight, cap) AS (VALUES {asked}), lease AS (INSERT INTO "
            f"pool_leases ({', '.join(c for c, _ in _LEASE_COLUMNS)}) SELECT "
            f"{_args(1, columns)} WHERE {fits} ON CONFLICT (execution_id, node_id, attempt) "
            "DO NOTHING RETURNING token), grants AS (INSERT INTO pool_grants (token, pool, "
            "weight, project, domain) SELECT lease.token, asked.pool, asked.weight, $4, $5 "
            "FROM lease, asked) SELECT token FROM lease"
        )
        types = [t for _, t in _LEASE_COLUMNS] + ["text"] * count + ["integer"] * 2 * count
        insert = self._statement(f"tf_pools_grant_if_fits_{count}", [*types, "float8"], body)
        params: list[Any] = [values[c] for c, _ in _LEASE_COLUMNS]
        params += names + [weights[n] for n in names] + [capacities[n] for n in names] + [now]
        lock = self._lock_sql(count)
        cur = self._cursor()
        cur.execute(f"BEGIN; {lock}; {insert}; COMMIT", [*names, *params])
        cur.nextset()  # past BEGIN
        cur.nextset()  # past the lock
        row = cur.fetchone()
        return None if row is None else int(row[0])

    # -- a release ------------------------------------------------------------------------

    def release(self, tokens: Sequence[int], pools: Sequence[str]) -> tuple[list[int], bool]:
        """Release the leases of ``tokens`` in one round trip unless somebody waits in one of
        ``pools`` (their pools): returns the tokens released, and whether somebody waits
        (then nothing was released). Commits without waiting for the disk: it only gives
        slots back (see ``HotSql.delete_leases``)."""
        count, many = len(pools), len(tokens)
        names, token_args = _args(1, count), _args(count + 1, many)
        lock = self._lock_sql(count)
        release = self._statement(
            f"tf_pools_release_{count}_{many}",
            ["text"] * count + ["bigint"] * many,
            "WITH waiting AS (SELECT EXISTS (SELECT 1 FROM pool_waits WHERE pool IN "
            f"({names})) AS somebody), gone AS (DELETE FROM pool_leases WHERE token IN "
            f"({token_args}) AND NOT (SELECT somebody FROM waiting) RETURNING token), grants AS "
            f"(DELETE FROM pool_grants WHERE pool IN ({names}) AND token IN (SELECT token FROM "
            "gone)) SELECT ARRAY(SELECT token FROM gone), (SELECT somebody FROM waiting), "
            "set_config('synchronous_commit', 'off', true)",
        )
        cur = self._cursor()
        cur.execute(f"BEGIN; {lock}; {release}; COMMIT", [*pools, *pools, *tokens])
        cur.nextset()  # past BEGIN
        cur.nextset()  # past the lock
        found, waiting, _ = cur.fetchone()
        return [int(token) for token in found], bool(waiting)
