"""The statements of the hot path (grant on a free pool, release, renew) as DBAPI SQL.

Building and executing SQLAlchemy Core statements costs tens of microseconds each, more than
SQLite takes to run them, and an acquire-and-release cycle runs about eight; so these few are
written once per dialect and run on the DBAPI cursor of the same connection (same transaction).
Everything off the hot path uses SQLAlchemy Core. Table and column names are those of
``_schema.py``; the tests run every statement on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from sqlalchemy.engine import Connection

from taskfabric.pools._notify import CHANNEL

_PARAM = re.compile(r":(\w+)")


class PoolRow(NamedTuple):
    name: str
    tokens: float
    refilled_at: float
    paused_until: float


#: SQLite: the rows of pools ``{names}`` (kind 0), their usage per project and domain (kind
#: 1) and whether anybody waits in one of them (kind 2), in one statement (read it with
#: `split_lock_usage`).
LOCK_USAGE = (
    "SELECT 0, name, tokens, refilled_at, paused_until, '', '' FROM pools "
    "WHERE name IN ({names}) UNION ALL SELECT 1, pool, SUM(weight), 0, 0, project, "
    "domain FROM pool_grants WHERE pool IN ({names}) GROUP BY pool, project, domain "
    "UNION ALL SELECT * FROM (SELECT 2, pool, 0, 0, 0, '', '' FROM pool_waits "
    "WHERE pool IN ({names}) LIMIT 1)"
)


def split_lock_usage(
    fetched: Iterable[Sequence[Any]],
) -> tuple[list[PoolRow], list[tuple[str, str, str, int]], bool]:
    """The rows of `LOCK_USAGE`: the pools' rows in name order, their usage, anybody waiting."""
    rows, held, waiting = [], [], False
    for kind, name, first, second, third, project, domain in fetched:
        if kind == 0:
            rows.append(PoolRow(name, first, second, third))
        elif kind == 1:
            held.append((name, project, domain, int(first)))
        else:
            waiting = True
    rows.sort(key=lambda r: r.name)
    return rows, held, waiting


class HotSql:
    """The hot statements for one dialect (``sqlite`` or ``postgresql``)."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"
        self._cache: dict[tuple[str, int], str] = {}

    def _sql(self, text: str) -> str:
        # Written with :name parameters (sqlite3's named style); psycopg wants %(name)s.
        return _PARAM.sub(r"%(\1)s", text) if self.postgres else text

    def _in(self, kind: str, count: int, template: str) -> str:
        """``template`` with ``{names}`` replaced by ``count`` parameters n0, n1, ..."""
        key = (kind, count)
        sql = self._cache.get(key)
        if sql is None:
            names = ", ".join(f":n{i}" for i in range(count))
            sql = self._cache[key] = self._sql(template.replace("{names}", names))
        return sql

    @staticmethod
    def _params(values: Sequence[Any], **more: Any) -> dict[str, Any]:
        params = {f"n{i}": value for i, value in enumerate(values)}
        params.update(more)
        return params

    @staticmethod
    def cursor(conn: Connection) -> Any:
        """The DBAPI cursor of ``conn``'s connection, made once per connection (a new one
        each call cost more than some statements; every statement here is read to the end
        before the next runs, so one cursor serves them all). ``info`` is cleared when the
        connection is closed or invalidated."""
        info = conn.info
        cur = info.get("taskfabric_pools_cursor")
        if cur is None:
            cur = info["taskfabric_pools_cursor"] = conn.connection.cursor()
        return cur

    # -- pools ----------------------------------------------------------------------------

    def lock(self, cur: Any, names: Sequence[str] | None, *, write: bool) -> list[PoolRow]:
        """The rows of ``names`` (all pools when ``None``), sorted by name, locked.

        PostgreSQL: ``FOR UPDATE`` in name order, so two transactions never wait on each other
        in a cycle. SQLite: with ``write``, the statement is an UPDATE, which takes the write
        lock even in a transaction that pysqlite began lazily (someone else's); without it the
        transaction is already ``BEGIN IMMEDIATE``.
        """
        cols = "name, tokens, refilled_at, paused_until"
        where = "" if names is None else " WHERE name IN ({names})"
        if self.postgres:
            template = f"SELECT {cols} FROM pools{where} ORDER BY name FOR UPDATE"
        elif write:
            template = f"UPDATE pools SET updated_at = updated_at{where} RETURNING {cols}"
        else:
            template = f"SELECT {cols} FROM pools{where}"
        kind = f"lock-{write}"
        if names is None:
            cur.execute(self._in(kind, -1, template))
        else:
            ordered = sorted(names)
            cur.execute(self._in(kind, len(ordered), template), self._params(ordered))
        return sorted((PoolRow(*row) for row in cur.fetchall()), key=lambda r: r.name)

    def lock_with_usage(
        self, cur: Any, names: Sequence[str]
    ) -> tuple[list[PoolRow], list[tuple[str, str, str, int]], bool] | None:
        """SQLite, in a transaction that holds the write lock already: ``lock`` and ``usage``
        of ``names`` in one statement. ``None`` on PostgreSQL, where the usage must be read
        by a statement of its own after the lock (a statement reads as of its start, which
        may be before the lock was granted)."""
        if self.postgres:
            return None
        cur.execute(
            self._in(
                "lock-usage",
                len(names),
                LOCK_USAGE,
            ),
            self._params(names),
        )
        return split_lock_usage(cur.fetchall())

    def save_bucket(self, cur: Any, name: str, tokens: float, now: float) -> None:
        cur.execute(
            self._in(
                "bucket",
                0,
                # refilled_at never moves back: a caller whose clock reading is older than
                # the last save would otherwise have the next refill count that time twice.
                "UPDATE pools SET tokens = :tokens, refilled_at = CASE WHEN refilled_at > :now "
                "THEN refilled_at ELSE :now END WHERE name = :name",
            ),
            {"tokens": tokens, "now": now, "name": name},
        )

    def notify(self, cur: Any, owners: Iterable[str]) -> None:
        """PostgreSQL: tell ``owners`` that a lease waits for them (sent at commit)."""
        if not self.postgres:
            return
        for owner in sorted(set(owners)):
            cur.execute(
                self._sql("SELECT pg_notify(:channel, :owner)"),
                {"channel": CHANNEL, "owner": owner},
            )

    # -- grants ---------------------------------------------------------------------------

    def usage(self, cur: Any, names: Sequence[str]) -> tuple[list[tuple[str, str, str, int]], bool]:
        """Slots held per (pool, project, domain) in ``names``, and whether anybody waits in
        one of them (one round trip)."""
        template = (
            "SELECT pool, project, domain, SUM(weight), 0 FROM pool_grants "
            "WHERE pool IN ({names}) GROUP BY pool, project, domain "
            "UNION ALL SELECT * FROM (SELECT pool, '', '', 0, 1 FROM pool_waits "
            "WHERE pool IN ({names}) LIMIT 1) AS waiting"
        )
        cur.execute(self._in("usage", len(names), template), self._params(names))
        held, waiting = [], False
        for pool, project, domain, total, is_waiter in cur.fetchall():
            if is_waiter:
                waiting = True
            else:
                held.append((pool, project, domain, int(total)))
        return held, waiting

    def waiting(self, cur: Any, names: Sequence[str] | None) -> bool:
        """Whether anybody waits (in one of ``names``)."""
        if names is None:
            cur.execute(self._in("waiting", -1, "SELECT 1 FROM pool_waits LIMIT 1"))
        else:
            cur.execute(
                self._in(
                    "waiting",
                    len(names),
                    "SELECT 1 FROM pool_waits WHERE pool IN ({names}) LIMIT 1",
                ),
                self._params(names),
            )
        return cur.fetchone() is not None

    def reap(self, cur: Any, now: float) -> int | None:
        """PostgreSQL: delete the leases expired at ``now`` with their grants, and the waiters
        not kept alive with their pools, in one statement; how many leases. SQLite: ``None``
        (the caller's statements run in process)."""
        if not self.postgres:
            return None
        cur.execute(
            self._in(
                "reap",
                0,
                "WITH leases AS (DELETE FROM pool_leases WHERE expires_at < :now RETURNING "
                "token), grants AS (DELETE FROM pool_grants WHERE token IN (SELECT token FROM "
                "leases)), waiters AS (DELETE FROM pool_waiters WHERE expires_at < :now "
                "RETURNING seq), waits AS (DELETE FROM pool_waits WHERE seq IN (SELECT seq "
                "FROM waiters)) SELECT count(*) FROM leases",
            ),
            {"now": now},
        )
        return int(cur.fetchone()[0])

    def queued(self, cur: Any, lookahead: int | None) -> list[tuple[Any, ...]]:
        """The waiters' rows in arrival order: ``(seq, execution_id, node_id, attempt,
        project, domain, owner, priority, weights, enqueued_at, expires_at, skips)``; with
        ``lookahead``, only the first that many of each project in each pool (by priority,
        then arrival)."""
        cols = (
            "seq, execution_id, node_id, attempt, project, domain, owner, priority, weights, "
            "enqueued_at, expires_at, skips"
        )
        if lookahead is None:
            cur.execute(self._in("queued-all", 0, f"SELECT {cols} FROM pool_waiters ORDER BY seq"))
        else:
            cur.execute(
                self._in(
                    "queued",
                    0,
                    f"SELECT {cols} FROM pool_waiters WHERE seq IN (SELECT seq FROM (SELECT "
                    "seq, row_number() OVER (PARTITION BY pool, project ORDER BY priority DESC, "
                    "seq) AS place FROM pool_waits) AS ranked WHERE place <= :lookahead) "
                    "ORDER BY seq",
                ),
                {"lookahead": lookahead},
            )
        return list(cur.fetchall())

    def delete_waiters(self, cur: Any, seqs: Sequence[int]) -> None:
        """Delete the waiters of ``seqs`` and their pools (PostgreSQL: one statement)."""
        if self.postgres:
            cur.execute(
                self._in(
                    "del-waiters",
                    len(seqs),
                    "WITH waits AS (DELETE FROM pool_waits WHERE seq IN ({names})) "
                    "DELETE FROM pool_waiters WHERE seq IN ({names})",
                ),
                self._params(seqs),
            )
            return
        for table in ("pool_waits", "pool_waiters"):
            cur.execute(
                self._in(
                    f"del-{table}", len(seqs), f"DELETE FROM {table} WHERE seq IN ({{names}})"
                ),
                self._params(seqs),
            )

    def pick_up(
        self, cur: Any, owner: str, execution_id: str | None, now: float
    ) -> list[tuple[Any, ...]]:
        """Mark ``owner``'s unexpired leases that were not picked up yet (of ``execution_id``
        when given) delivered, living their full TTL from ``now``. Returns, per lease by
        token, ``(token, execution_id, node_id, attempt, project, domain, expires_at,
        acquired_at, {pool: weight})``. PostgreSQL: one statement."""
        where = "owner = :owner AND delivered = :no AND expires_at >= :now"
        params: dict[str, Any] = {"owner": owner, "no": False, "yes": True, "now": now}
        if execution_id is not None:
            where += " AND execution_id = :execution_id"
            params["execution_id"] = execution_id
        update = (
            f"UPDATE pool_leases SET delivered = :yes, expires_at = :now + ttl WHERE {where} "
            "RETURNING token, execution_id, node_id, attempt, project, domain, expires_at, "
            "acquired_at"
        )
        kind = f"pick-up-{execution_id is not None}"
        if self.postgres:
            cur.execute(
                self._in(
                    kind,
                    0,
                    f"WITH picked AS ({update}) SELECT picked.*, pool_grants.pool, "
                    "pool_grants.weight FROM picked JOIN pool_grants ON pool_grants.token = "
                    "picked.token",
                ),
                params,
            )
            rows = cur.fetchall()
        else:
            cur.execute(self._in(kind, 0, update), params)
            picked = {row[0]: row for row in cur.fetchall()}
            if not picked:
                return []
            cur.execute(
                self._in(
                    "grants-of",
                    len(picked),
                    "SELECT token, pool, weight FROM pool_grants WHERE token IN ({names})",
                ),
                self._params(list(picked)),
            )
            rows = [(*picked[token], pool, weight) for token, pool, weight in cur.fetchall()]
        leases: dict[int, tuple[Any, ...]] = {}
        for *lease, pool, weight in rows:
            token = int(lease[0])
            if token not in leases:
                leases[token] = (*lease, {})
            leases[token][-1][pool] = int(weight)
        return [leases[token] for token in sorted(leases)]

    def poll_check(self, cur: Any, owner: str, execution_id: str | None) -> tuple[bool, bool]:
        """Whether ``owner`` has leases not picked up yet (of ``execution_id`` when given),
        and whether anybody waits in any pool (one round trip)."""
        mine = "owner = :owner AND delivered = :no"
        params: dict[str, Any] = {"owner": owner, "no": False}
        if execution_id is not None:
            mine += " AND execution_id = :execution_id"
            params["execution_id"] = execution_id
        cur.execute(
            self._in(
                f"poll-{execution_id is not None}",
                0,
                f"SELECT EXISTS (SELECT 1 FROM pool_leases WHERE {mine}), "
                "EXISTS (SELECT 1 FROM pool_waits)",
            ),
            params,
        )
        undelivered, waiting = cur.fetchone()
        return bool(undelivered), bool(waiting)

    def insert_lease(
        self, cur: Any, values: Mapping[str, Any], weights: Mapping[str, int]
    ) -> int | None:
        """Insert a lease and its grants (``weights``: pool -> slots, in the lease's project
        and domain); the new lease's token, or ``None`` when the holder has a lease already.
        PostgreSQL: one statement (a round trip each costs more than the insert)."""
        lease_sql = (
            "INSERT INTO pool_leases (execution_id, node_id, attempt, project, domain, "
            "owner, priority, acquired_at, expires_at, ttl, delivered) VALUES "
            "(:execution_id, :node_id, :attempt, :project, :domain, :owner, :priority, "
            ":acquired_at, :expires_at, :ttl, :delivered) "
            "ON CONFLICT (execution_id, node_id, attempt) DO NOTHING RETURNING token"
        )
        names = list(weights)
        if self.postgres:
            pairs = ", ".join(f"(:n{i}, :w{i})" for i in range(len(names)))
            params = self._params(names, **values)
            params.update({f"w{i}": weights[name] for i, name in enumerate(names)})
            cur.execute(
                self._in(
                    "lease-grants",
                    len(names),
                    f"WITH lease AS ({lease_sql}), grants AS (INSERT INTO pool_grants "
                    "(token, pool, weight, project, domain) SELECT lease.token, asked.pool, "
                    "asked.weight, :project, :domain FROM lease, (VALUES "
                    f"{pairs}) AS asked (pool, weight)) SELECT token FROM lease",
                ),
                params,
            )
            row = cur.fetchone()
            return None if row is None else int(row[0])
        cur.execute(self._in("lease", 0, lease_sql), values)
        row = cur.fetchone()
        if row is None:
            return None
        token = int(row[0])
        grant_sql = self._in(
            "grant",
            0,
            "INSERT INTO pool_grants (token, pool, weight, project, domain) "
            "VALUES (:token, :pool, :weight, :project, :domain)",
        )
        for name in names:
            cur.execute(
                grant_sql,
                {
                    "token": token,
                    "pool": name,
                    "weight": weights[name],
                    "project": values["project"],
                    "domain": values["domain"],
                },
            )
        return token

    def delete_leases(
        self, cur: Any, tokens: Sequence[int], pools: Sequence[str], *, relaxed: bool = False
    ) -> tuple[list[int], bool]:
        """Delete leases by token: the lease rows first (a concurrent renew then finds
        nothing), then their grants in ``pools`` (the pools of those leases; the queue path
        also sweeps grants left without a lease). Returns the tokens that existed, and
        whether anybody waits in one of ``pools``.

        ``relaxed`` (PostgreSQL): when nobody waits, the transaction commits without waiting
        for its WAL to reach the disk (``synchronous_commit`` off for it alone): it only gives
        slots back, and if the database server crashed in the next instant and lost it, the
        leases would come back and be reclaimed at their expiry, like a dead holder's. When
        somebody waits, a pass follows in the transaction and may grant: that commits in full.
        PostgreSQL: one statement; SQLite: two, run in process."""
        if self.postgres:
            relax = (
                "set_config('synchronous_commit', CASE WHEN EXISTS (SELECT 1 FROM pool_waits "
                "WHERE pool IN ({names})) THEN 'on' ELSE 'off' END, true)"
                if relaxed
                else "''"
            )
            key = (f"release-{len(tokens)}-{relaxed}", len(pools))
            sql = self._cache.get(key)
            if sql is None:
                tokens_sql = ", ".join(f":t{i}" for i in range(len(tokens)))
                sql = self._in(
                    key[0],
                    len(pools),
                    "WITH gone AS (DELETE FROM pool_leases WHERE token IN ("
                    f"{tokens_sql}) RETURNING token), grants AS (DELETE FROM pool_grants "
                    "WHERE pool IN ({names}) AND token IN (SELECT token FROM gone)) "
                    "SELECT ARRAY(SELECT token FROM gone), EXISTS (SELECT 1 FROM pool_waits "
                    "WHERE pool IN ({names})), " + relax,
                )
            params: dict[str, Any] = {f"t{i}": token for i, token in enumerate(tokens)}
            params.update({f"n{i}": pool for i, pool in enumerate(pools)})
            cur.execute(sql, params)
            found, waiting, _ = cur.fetchone()
            return [int(token) for token in found], bool(waiting)
        cur.execute(
            self._in(
                "del-lease",
                len(tokens),
                "DELETE FROM pool_leases WHERE token IN ({names}) RETURNING token",
            ),
            self._params(tokens),
        )
        found = [int(row[0]) for row in cur.fetchall()]
        if not found:
            return found, False
        params = {f"t{i}": token for i, token in enumerate(found)}
        params.update({f"n{i}": pool for i, pool in enumerate(pools)})
        # whether anybody waits, in the same statement (a row per grant deleted: none when
        # the leases had no grant in ``pools``, and then nothing was freed there for anyone)
        template = (
            "DELETE FROM pool_grants WHERE pool IN ({names}) AND token IN ({tokens}) "
            "RETURNING EXISTS (SELECT 1 FROM pool_waits WHERE pool IN ({names}))"
        )
        key = (f"del-grant-{len(found)}", len(pools))
        sql = self._cache.get(key)
        if sql is None:
            tokens_sql = ", ".join(f":t{i}" for i in range(len(found)))
            sql = self._in(key[0], len(pools), template.replace("{tokens}", tokens_sql))
        cur.execute(sql, params)
        return found, any(waiting for (waiting,) in cur.fetchall())

    def renew(self, cur: Any, tokens: Sequence[int], now: float) -> dict[int, float]:
        """Extend the unexpired leases of ``tokens`` by their TTL; token -> new expiry."""
        cur.execute(
            self._in(
                "renew",
                len(tokens),
                "UPDATE pool_leases SET expires_at = :now + ttl "
                "WHERE token IN ({names}) AND expires_at >= :now RETURNING token, expires_at",
            ),
            self._params(tokens, now=now),
        )
        return {int(token): float(expires) for token, expires in cur.fetchall()}
