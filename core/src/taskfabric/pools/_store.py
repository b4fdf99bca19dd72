"""The database side of the pool manager: its connection and transactions, the pool rows
(locks, buckets), the lease and waiter rows. ``PoolManager`` builds the grant logic and the
API on it."""

from __future__ import annotations

import json
import math
import random
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from taskfabric.pools import _fair as fair
from taskfabric.pools._hot import HotSql, PoolRow
from taskfabric.pools._notify import GrantListener
from taskfabric.pools._owners import owner_is_dead
from taskfabric.pools._pgfast import PgOneTrip
from taskfabric.pools._schema import pool_grants, pool_leases, pool_waiters, pool_waits, pools
from taskfabric.pools._spec import Holder, Lease, PoolError, PoolSpec
from taskfabric.pools._sqlitefast import SqliteDirect

T = TypeVar("T")

# PostgreSQL: deadlock detected, serialization failure. Both leave nothing behind; try again.
_RETRY_SQLSTATES = {"40P01", "40001"}
_RETRIES = 8

P, L, G, W, WS = pools, pool_leases, pool_grants, pool_waiters, pool_waits


class Slow:
    """The fast path could not decide; take the queue path."""


SLOW = Slow()


@dataclass(frozen=True)
class Queued:
    """A waiter as read from the database: what the rule needs, and what status shows."""

    waiter: fair.Waiter
    owner: str
    enqueued_at: float
    #: When the waiter leaves the queue unless its owner keeps it alive; a grant made to it
    #: by another process must be picked up by then (its owner's next poll) or is reclaimed.
    expires_at: float = math.inf


def holder_of(row: Any) -> Holder:
    return Holder(row.execution_id, row.node_id, row.attempt, row.project, row.domain)


def holder_is(table: sa.Table, holder: Holder) -> sa.ColumnElement[bool]:
    return sa.and_(
        table.c.execution_id == holder.execution_id,
        table.c.node_id == holder.node_id,
        table.c.attempt == holder.attempt,
    )


class PoolStore:
    """Rows and transactions of the pool tables for one manager (see ``PoolManager``)."""

    def __init__(
        self,
        engine: Engine,
        specs: Mapping[str, PoolSpec],
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
        max_skips: int = 8,
        lookahead: int = 64,
        is_dead: Callable[[str], bool] = owner_is_dead,
    ) -> None:
        for name, spec in specs.items():
            if name != spec.name:
                raise PoolError(f"pool spec keyed '{name}' is named '{spec.name}'")
        if max_skips < 0 or lookahead < 1:
            raise PoolError("max_skips must be >= 0 and lookahead >= 1")
        self.engine = engine
        self.specs: dict[str, PoolSpec] = dict(specs)
        self.owner = owner
        self.clock = clock
        self.max_skips = max_skips
        self.lookahead = lookahead
        self._dialect = engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise PoolError(f"pools need SQLite or PostgreSQL, not {self._dialect}")
        self._sqlite = self._dialect == "sqlite"
        self._hot = HotSql(self._dialect)
        # Waiters are kept alive like leases: poll refreshes this owner's waiters every
        # renew interval (a third of the shortest lease TTL), and a waiter not refreshed for
        # two renew intervals leaves the queue (its owner died on another host, or stalled).
        # A grant made to another owner's waiter must be picked up within that time too.
        self.renew_interval = min((s.lease_ttl for s in self.specs.values()), default=30) / 3
        self.waiter_ttl = 2 * self.renew_interval
        self._keepalive_every = self.renew_interval
        self._is_dead = is_dead
        self._keepalive_at = -math.inf
        self._conn: Connection | None = None
        self._conn_lock = threading.RLock()
        self._passes = 0
        self._write_locked: weakref.WeakSet[Connection] = weakref.WeakSet()
        if self._sqlite:
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            from sqlalchemy.dialects.postgresql import insert as dialect_insert  # type: ignore[assignment]
        self._pool_insert = dialect_insert(P).on_conflict_do_nothing(index_elements=["name"])
        self._listener: GrantListener | None = None
        self._pauses: dict[str, float] = {}  # pool -> end of a pushback this process made
        self._pauses_lock = threading.Lock()
        self._checked: dict[tuple[Any, ...], dict[str, int]] = {}
        # the hot path's own connection (``_pgfast.py``, ``_sqlitefast.py``); not for an
        # in-memory SQLite database, whose one connection everybody shares
        self._one_trip: PgOneTrip | SqliteDirect | None = None
        if not self._sqlite:
            self._one_trip = PgOneTrip(engine)
        elif engine.url.database not in (None, "", ":memory:"):
            self._one_trip = SqliteDirect(engine)
        # pool -> the slots its passes grant now, when a backend sizes it (set_capacity);
        # replaced whole, never mutated, so the loop's thread reads it without a lock
        self._capacities: Mapping[str, int] = {}
        self.sync()

    # -- capacity sized from outside ------------------------------------------------------

    def set_capacity(self, name: str, slots: int | None) -> int | None:
        """From now on, grant at most ``slots`` of pool ``name`` (clipped to its spec's
        ``slots``, which stay the ceiling that requests are checked against); ``None``
        goes back to the spec's. For a pool whose size follows a service (a cluster's free
        task slots): 0 grants nothing. Leases held beyond a smaller capacity are kept; new
        grants wait until the pool's use is below it. A larger one is granted at the next
        ``poll``. Held by this manager (this process) only: every manager granting from the
        pool must be told. Callable from any thread. Returns the capacity in force."""
        spec = self._spec(name)
        if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)):
            raise PoolError(f"pool '{name}': a capacity is an integer of slots, got {slots!r}")
        capacities = dict(self._capacities)
        if slots is None:
            capacities.pop(name, None)
        else:
            capacities[name] = max(0, min(slots, spec.slots))
        self._capacities = capacities
        return capacities.get(name)

    def capacity(self, name: str) -> int:
        """The slots pool ``name`` grants now: its spec's, or what ``set_capacity`` set."""
        spec = self._spec(name)
        return self._capacities.get(name, spec.slots)

    # -- pushbacks this process made -----------------------------------------------------

    def _note_pause(self, pool: str, until: float) -> None:
        with self._pauses_lock:
            self._pauses[pool] = max(until, self._pauses.get(pool, 0.0))

    def _local_pause(self, names: Iterable[str]) -> float:
        """Seconds left of the pushbacks this process made in ``names`` (0: none)."""
        now = self.clock()
        with self._pauses_lock:
            return max([0.0, *(self._pauses.get(name, 0.0) - now for name in names)])

    # -- transactions ---------------------------------------------------------------------

    def _run(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in one write transaction of its own; retried on a PostgreSQL deadlock.

        The manager keeps one connection for these (checking one out of the engine's pool
        and giving it back costs more than a grant on SQLite); a lock makes calls from several
        threads take turns, and a connection the driver reports broken is replaced."""
        with self._conn_lock:
            for attempt in range(_RETRIES):
                conn = self._conn
                if conn is None or conn.closed or conn.invalidated:
                    conn = self._conn = self.engine.connect()
                try:
                    conn.begin()
                    if self._sqlite:
                        # pysqlite begins lazily, at the first write, so a read-then-write
                        # transaction could act on a state another process has since changed.
                        # BEGIN IMMEDIATE takes the write lock first (busy_timeout waits).
                        self._hot.cursor(conn).execute("BEGIN IMMEDIATE")
                    result = work(conn)
                    conn.commit()
                    return result
                except sa.exc.DBAPIError as exc:
                    self._discard(conn, broken=exc.connection_invalidated)
                    code = getattr(exc.orig, "sqlstate", None)
                    if code not in _RETRY_SQLSTATES or attempt == _RETRIES - 1:
                        raise
                except BaseException:
                    self._discard(conn, broken=False)
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    def _discard(self, conn: Connection, *, broken: bool) -> None:
        """Roll back after an error; drop the connection if it cannot be trusted."""
        try:
            conn.rollback()
        except sa.exc.DBAPIError:
            broken = True
        if broken:
            conn.close()
            self._conn = None

    def on_grant(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` soon after another process's pass grants a lease to one of this
        owner's waiters (PostgreSQL: ``LISTEN``/``NOTIFY``, called from a listener thread), so
        the caller can ``poll`` at once instead of at its next tick. A hint only: polling
        stays necessary. Returns the unsubscribe. SQLite: never called."""
        if self._sqlite:
            return lambda: None
        if self._listener is None:
            self._listener = GrantListener(self.engine, self.owner)
        return self._listener.subscribe(wake)

    def close(self) -> None:
        """Close the manager's connections (the engine and its pool stay the caller's)."""
        if self._listener is not None:
            self._listener.close()
        with self._conn_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._one_trip is not None:
                self._one_trip.close()

    def _one_trip_run(self, work: Callable[[Any], T]) -> T | None:
        """``work`` on the hot path's own connection (``_pgfast.py``, ``_sqlitefast.py``).
        PostgreSQL: ``None`` when the connection failed or the transaction met a deadlock
        or serialization failure: the caller then takes the usual path, which retries and
        reconnects. Any other error rolls back and is raised."""
        fast = self._one_trip
        assert fast is not None
        with self._conn_lock:
            try:
                return work(fast)
            except BaseException as exc:
                fast.abandon()
                if not self._sqlite:
                    import psycopg

                    retry = (psycopg.OperationalError, psycopg.errors.TransactionRollback)
                    if isinstance(exc, retry):
                        return None
                    if isinstance(exc, psycopg.errors.InvalidSqlStatementName):
                        # the session lost its prepared statements: start a new one
                        fast.close()
                        return None
                raise

    def _tx(self, conn: Connection | None, work: Callable[[Connection, bool], T]) -> T:
        """``work(conn, external)`` in the caller's transaction, or in one of its own."""
        if conn is not None:
            return work(conn, True)
        return self._run(lambda c: work(c, False))

    def _read(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` on the manager's connection without taking a write lock."""
        with self._conn_lock:
            conn = self._conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._conn = self.engine.connect()
            if not conn.in_transaction():
                # so that the rollback below reaches the database even when ``work`` ran
                # only raw DBAPI statements (which SQLAlchemy does not see begin a
                # transaction); PostgreSQL would keep the snapshot and any row lock taken
                conn.begin()
            try:
                return work(conn)
            except sa.exc.DBAPIError as exc:
                self._discard(conn, broken=exc.connection_invalidated)
                raise
            finally:
                if self._conn is not None:
                    self._conn.rollback()  # ends the read (PostgreSQL began a transaction)

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed at the end of the block (rolled back
        on an error): for passing as ``conn=`` to fold several calls, and the caller's own
        writes, into one transaction. On SQLite it begins with ``BEGIN IMMEDIATE``."""
        with self.engine.connect() as conn:
            conn.begin()
            if self._sqlite:
                self._hot.cursor(conn).execute("BEGIN IMMEDIATE")
            self._write_locked.add(conn)
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            finally:
                self._write_locked.discard(conn)
            conn.commit()

    def _lock(
        self, conn: Connection, names: Iterable[str] | None, *, external: bool = False
    ) -> list[PoolRow]:
        """The pool rows (all, or ``names``), locked. In a caller's transaction (``external``)
        PostgreSQL locks every pool, so that any sequence of calls in it takes the locks in one
        global order, and SQLite takes the write lock with an UPDATE."""
        if external and not self._sqlite:
            names = None
        # SQLite: a transaction from begin() holds the write lock already (BEGIN IMMEDIATE)
        write = external and conn not in self._write_locked
        return self._hot.lock(
            self._hot.cursor(conn), None if names is None else list(names), write=write
        )

    # -- configuration --------------------------------------------------------------------

    def sync(self) -> None:
        """Write this manager's specs to the pool rows (new pools start with a full bucket)."""
        if not self.specs:
            return
        now = self.clock()

        def work(conn: Connection) -> None:
            self._insert_pool_rows(conn, self.specs, now)
            for row in self._lock(conn, self.specs):
                spec = self.specs[row.name]
                conn.execute(
                    P.update()
                    .where(P.c.name == row.name)
                    .values(
                        slots=spec.slots,
                        rate=spec.rate,
                        burst=spec.bucket,
                        lease_ttl=spec.lease_ttl,
                        tokens=min(row.tokens, float(spec.bucket)),
                        updated_at=now,
                    )
                )

        self._run(work)

    def _insert_pool_rows(self, conn: Connection, names: Iterable[str], now: float) -> None:
        """Create the rows of pools that have none (new pools start with a full bucket)."""
        conn.execute(
            self._pool_insert,
            [
                {
                    "name": spec.name,
                    "slots": spec.slots,
                    "rate": spec.rate,
                    "burst": spec.bucket,
                    "lease_ttl": spec.lease_ttl,
                    "tokens": float(spec.bucket),
                    "refilled_at": now,
                    "paused_until": 0.0,
                    "updated_at": now,
                }
                for spec in (self._spec(name) for name in names)
            ],
        )

    def _spec(self, name: str) -> PoolSpec:
        spec = self.specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self.specs)) or "none"
            raise PoolError(
                f"unknown pool '{name}' (configured pools: {known}); declare it under "
                f"[pools.{name}] in the config file"
            )
        return spec

    def validate_request(
        self, weights: Mapping[str, int], *, project: str, domain: str, who: str = "a task"
    ) -> dict[str, int]:
        """``weights`` checked against the pools (for a launch, before anything is queued):
        raises ``PoolError`` for an unknown pool or a weight that could never be granted to
        ``project`` / ``domain``; ``who`` names the asker in the message."""
        return self._check_request(Holder(who, "", 0, project, domain), weights, who=who)

    def _check_request(
        self, holder: Holder, weights: Mapping[str, int], *, who: str | None = None
    ) -> dict[str, int]:
        # the same request shape comes again and again (every attempt of a task): checked once
        # per shape and spec (a spec replaced, as a pool resized, is checked anew)
        specs = self.specs
        key = (holder.project, holder.domain, *weights.items(), *map(id, map(specs.get, weights)))
        if all(type(weight) is int for weight in weights.values()):
            checked = self._checked.get(key)
            if checked is not None:
                return dict(checked)
        checked = self._check_request_once(holder, weights, who=who)
        if len(self._checked) < 1024:
            self._checked[key] = dict(checked)
        return checked

    def _check_request_once(
        self, holder: Holder, weights: Mapping[str, int], *, who: str | None = None
    ) -> dict[str, int]:
        holder_text = who if who is not None else str(holder)
        if not weights:
            raise PoolError(f"{holder_text}: a pool request needs at least one pool")
        checked = {}
        for name, weight in weights.items():
            spec = self._spec(name)
            if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
                raise PoolError(
                    f"{holder_text}: pool '{name}': a request weighs an integer >= 1 slots, "
                    f"got {weight!r}"
                )
            most = spec.most_grantable(holder.project, holder.domain)
            if weight > most:
                raise PoolError(
                    f"{holder_text}: pool '{name}': asks for {weight} slots but at most {most} can "
                    f"ever be granted to project '{holder.project}' / domain '{holder.domain}' "
                    f"(slots {spec.slots}, burst {spec.bucket if spec.rate else '-'}, project "
                    f"cap {spec.project_cap(holder.project) or '-'}, domain cap "
                    f"{spec.domain_cap(holder.domain) or '-'}); lower the request or raise the "
                    "pool's limits"
                )
            checked[name] = weight
        return checked

    def _ttl(self, names: Iterable[str]) -> float:
        return min(self._spec(n).lease_ttl for n in names)

    # -- pool state -----------------------------------------------------------------------

    def _new_lease(
        self,
        holder: Holder,
        weights: Mapping[str, int],
        priority: int,
        now: float,
        states: Mapping[str, fair.PoolState] | None = None,
    ) -> tuple[dict[str, Any], dict[str, float], float]:
        """A fast grant's lease row for ``holder`` (delivered), what its rate-limited pools'
        token buckets hold once it took its ``weights`` from them (``states``: as read under
        the lock; None: no bucket), and its TTL."""
        ttl = self._ttl(weights)
        values = lease_values(holder, self.owner, priority, now, ttl, ttl, True)
        buckets = {
            name: states[name].tokens - weight
            for name, weight in weights.items()
            if states is not None and states[name].spec.rate is not None
        }
        return values, buckets, ttl

    def _states(
        self,
        cur: Any,
        rows: Iterable[PoolRow],
        now: float,
        *,
        usage: tuple[list[tuple[str, str, str, int]], bool] | None = None,
    ) -> tuple[dict[str, fair.PoolState], bool]:
        """The states of the known pools of ``rows`` (in-use counts, buckets refilled to
        ``now``), and whether anybody waits in one of them; ``usage``: ``HotSql.usage`` of
        those pools, read already."""
        states: dict[str, fair.PoolState] = {}
        capacities = self._capacities
        for row in rows:
            spec = self.specs.get(row.name)
            if spec is None:
                continue
            states[row.name] = fair.PoolState(
                spec,
                tokens=refill(spec, row, now),
                paused=row.paused_until > now,
                # a capacity below the spec's slots: the rest is out of reach of every grant
                reserved_slots=spec.slots - capacities.get(row.name, spec.slots),
            )
        if not states:
            return states, False
        held, waiting = self._hot.usage(cur, list(states)) if usage is None else usage
        for pool, project, domain, total in held:
            states[pool].add(project, domain, total)
        return states, waiting

    def _save_buckets(
        self,
        cur: Any,
        before: Mapping[str, float],
        states: Mapping[str, fair.PoolState],
        now: float,
    ) -> None:
        """Write the buckets that grants took tokens from (as refilled up to ``now``)."""
        for name, state in states.items():
            if state.spec.rate is not None and state.tokens != before[name]:
                self._hot.save_bucket(cur, name, state.tokens, now)

    # -- leases ---------------------------------------------------------------------------

    def _grant(
        self,
        cur: Any,
        holder: Holder,
        weights: Mapping[str, int],
        *,
        owner: str,
        priority: int,
        now: float,
        delivered: bool,
        pickup_by: float = math.inf,
    ) -> Lease | None:
        """Insert a lease; ``None`` when the holder has one already. An undelivered lease
        expires at ``pickup_by`` (its waiter's own expiry) unless its owner picks it up
        (``poll`` gives it the full TTL then): a grant to a waiter whose owner died is
        reclaimed when that waiter would have left the queue."""
        ttl = self._ttl(weights)
        lifetime = ttl if delivered else max(0.0, min(ttl, pickup_by - now))
        values = lease_values(holder, owner, priority, now, lifetime, ttl, delivered)
        token = self._hot.insert_lease(cur, values, weights)
        if token is None:
            return None
        return Lease(holder, dict(weights), token, now + lifetime, now)

    def _leases(self, conn: Connection, where: sa.ColumnElement[bool]) -> list[Lease]:
        rows = conn.execute(
            sa.select(L, G.c.pool, G.c.weight)
            .join(G, G.c.token == L.c.token)
            .where(where)
            .order_by(L.c.token)
        ).all()
        weights: dict[int, dict[str, int]] = {}
        first: dict[int, Any] = {}
        for row in rows:
            weights.setdefault(row.token, {})[row.pool] = row.weight
            first.setdefault(row.token, row)
        return [
            Lease(holder_of(row), weights[token], token, row.expires_at, row.acquired_at)
            for token, row in first.items()
        ]

    def _delete_leases(self, conn: Connection, where: sa.ColumnElement[bool]) -> list[int]:
        """Delete leases: the lease rows first, so that a concurrent renew finds nothing."""
        tokens = list(conn.execute(L.delete().where(where).returning(L.c.token)).scalars())
        if tokens:
            conn.execute(G.delete().where(G.c.token.in_(tokens)))
        return tokens

    def _delete_waiters(self, conn: Connection, where: sa.ColumnElement[bool]) -> int:
        seqs = list(conn.execute(W.delete().where(where).returning(W.c.seq)).scalars())
        if seqs:
            conn.execute(WS.delete().where(WS.c.seq.in_(seqs)))
        return len(seqs)

    def _reap(self, conn: Connection, now: float, *, sweep: bool = False) -> int:
        """Delete expired leases and waiters not seen for a TTL; with ``sweep`` (and every
        64th pass) also rows left without their lease or waiter, which no code path leaves but
        which would hold slots forever if one did."""
        reaped = self._hot.reap(self._hot.cursor(conn), now)
        if reaped is None:
            reaped = len(self._delete_leases(conn, L.c.expires_at < now))
            self._delete_waiters(conn, W.c.expires_at < now)
        self._passes += 1
        if sweep or self._passes % 64 == 0:
            conn.execute(G.delete().where(G.c.token.not_in(sa.select(L.c.token))))
            conn.execute(WS.delete().where(WS.c.seq.not_in(sa.select(W.c.seq))))
        return reaped

    # -- the queue ------------------------------------------------------------------------

    def _queued(self, conn: Connection, *, limited: bool) -> list[Queued]:
        """The waiters a pass considers: the first ``lookahead`` of each project in each pool
        (all of them when not ``limited``), in arrival order."""
        queued = []
        rows = self._hot.queued(self._hot.cursor(conn), self.lookahead if limited else None)
        for seq, execution, node, attempt, project, domain, owner, priority, weights, *more in rows:
            enqueued_at, expires_at, skips = more
            waiter = fair.Waiter(
                Holder(execution, node, attempt, project, domain),
                json.loads(weights),
                priority,
                seq,
                skips,
            )
            queued.append(Queued(waiter, owner, enqueued_at, expires_at))
        return queued


def lease_values(
    holder: Holder,
    owner: str,
    priority: int,
    now: float,
    lifetime: float,
    ttl: float,
    delivered: bool,
) -> dict[str, Any]:
    """The columns of a new lease row."""
    return {
        "execution_id": holder.execution_id,
        "node_id": holder.node_id,
        "attempt": holder.attempt,
        "project": holder.project,
        "domain": holder.domain,
        "owner": owner,
        "priority": priority,
        "acquired_at": now,
        "expires_at": now + lifetime,
        "ttl": ttl,
        "delivered": delivered,
    }


def refill(spec: PoolSpec, row: PoolRow, now: float) -> float:
    """Tokens in the bucket at ``now`` (infinite without a rate)."""
    if spec.rate is None:
        return math.inf
    elapsed = max(0.0, now - row.refilled_at)
    return min(float(spec.bucket), row.tokens + elapsed * spec.rate)
