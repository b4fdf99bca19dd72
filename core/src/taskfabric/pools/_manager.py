"""PoolManager: leases on pools, kept in the metadata database and shared by every engine."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskfabric.logs import get_logger
from taskfabric.pools import _fair as fair
from taskfabric.pools import _folded as folded
from taskfabric.pools import _pushbacks as pb
from taskfabric.pools._hot import PoolRow
from taskfabric.pools._pgfast import PgOneTrip
from taskfabric.pools._spec import Holder, HolderStatus, Lease, PoolError, PoolStatus, WaiterStatus
from taskfabric.pools._sqlitefast import SqliteDirect
from taskfabric.pools._store import (
    SLOW,
    WS,
    G,
    L,
    P,
    PoolStore,
    Queued,
    Slow,
    W,
    holder_is,
    holder_of,
    refill,
)

log = get_logger("taskfabric.pools")


class _PassNeeded(Exception):
    """A release on PostgreSQL holds only its own pools and found waiters behind it."""


class PoolManager(PoolStore):
    """Grants, renews and releases leases on the pools of ``specs``.

    All state is in the database behind ``engine`` (migrated to revision 0003 or later), so every
    manager on that database, in any process on any host, shares it. ``owner`` names this
    process (``host:pid``) in the leases and waiters it creates; ``clock`` gives epoch seconds.
    Meant to be called from one thread (the engine's loop); every call is one or two short
    transactions.
    """

    def _pass(
        self,
        conn: Connection,
        now: float,
        *,
        caller: Holder | None = None,
        executions: Collection[str] | None = (),
    ) -> list[Lease]:
        """Reclaim what expired, then grant every waiter the fairness rule lets through.

        Every pool must be locked already. Returns, marked delivered, the leases granted to
        ``caller`` when given, else to this owner's waiters of ``executions`` (``None``: of
        any execution); every other grant waits for its owner's ``poll``.
        """
        self._reap(conn, now)
        queued = self._queued(conn, limited=True)
        if self._drop_dead_owners(conn, {q.owner for q in queued}):
            queued = self._queued(conn, limited=True)
        if not queued:
            return []
        cur = self._hot.cursor(conn)
        states, _ = self._states(cur, self._hot.lock(cur, None, write=False), now)
        before = {name: state.tokens for name, state in states.items()}
        owners = {q.waiter.seq: q.owner for q in queued}
        pickup_by = {q.waiter.seq: q.expires_at for q in queued}
        decided = fair.plan(states, [q.waiter for q in queued], max_skips=self.max_skips)
        mine: list[Lease] = []
        elsewhere: set[str] = set()
        if decided.granted:
            self._hot.delete_waiters(cur, [waiter.seq for waiter in decided.granted])
        for waiter in decided.granted:
            owner = owners[waiter.seq]
            if caller is not None:
                ours = waiter.holder.key == caller.key
            else:
                ours = owner == self.owner and (
                    executions is None or waiter.holder.execution_id in executions
                )
            lease = self._grant(
                cur,
                waiter.holder,
                waiter.weights,
                owner=owner,
                priority=waiter.priority,
                now=now,
                delivered=ours,
                pickup_by=pickup_by[waiter.seq],
            )
            if lease is not None and ours:
                mine.append(lease)
            elif lease is not None:
                elsewhere.add(owner)
                if owner != self.owner:
                    log.debug(
                        "pool lease granted to another process's waiter",
                        owner=owner,
                        execution_id=waiter.holder.execution_id,
                        node_id=waiter.holder.node_id,
                        attempt=waiter.holder.attempt,
                        pools=dict(waiter.weights),
                        token=lease.token,
                        granted_at=now,
                    )
        self._hot.notify(cur, elsewhere)
        if decided.bypassed:
            conn.execute(
                W.update().where(W.c.seq.in_(sorted(decided.bypassed))).values(skips=W.c.skips + 1)
            )
        self._save_buckets(cur, before, states, now)
        return mine

    def _drop_dead_owners(self, conn: Connection, owners: Collection[str]) -> bool:
        """Drop the waiters, and the grants not picked up yet, of ``owners`` whose process is
        known to be gone (same host, pid gone: see ``_owners.py``): a dead engine's waiters
        never receive a grant. Its leases picked up already stay until their TTL (the work
        they cover may outlive the engine, a task process of its own). True if any dropped."""
        dead = sorted(o for o in owners if o != self.owner and self._is_dead(o))
        if not dead:
            return False
        waiters = self._delete_waiters(conn, W.c.owner.in_(dead))
        leases = self._delete_leases(conn, L.c.owner.in_(dead) & (L.c.delivered == sa.false()))
        log.info(
            "pool: dropped the queued requests of dead engine processes",
            owners=dead,
            waiters=waiters,
            undelivered_leases=len(leases),
        )
        return True

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        holder: Holder,
        weights: Mapping[str, int],
        priority: int = 0,
        *,
        conn: Connection | None = None,
    ) -> Lease | None:
        """A lease on every pool of ``weights`` (pool -> slots) at once, or ``None``: the holder
        then waits in the queue of each of those pools until a pass grants it (``poll``).

        Calling again for a queued holder keeps its place and tries again; for a holder that
        holds a lease it returns that lease. Raises ``PoolError`` for an unknown pool or a
        weight that could never be granted. ``conn``: run in the caller's transaction (see
        ``begin``); the caller commits.
        """
        checked = self._check_request(holder, weights)
        if conn is not None:
            folded = self._request_fast(conn, holder, checked, priority, external=True)
            if isinstance(folded, Slow):
                return self._request_queued(conn, holder, checked, priority, external=True)
            return folded
        got: Lease | Slow | None = None
        if self._one_trip is not None:
            got = self._one_trip_run(
                lambda fast: self._request_one_trip(fast, holder, checked, priority)
            )
        if got is None:
            got = self._run(lambda c: self._request_fast(c, holder, checked, priority))
        if isinstance(got, Slow):
            return self._run(lambda c: self._request_queued(c, holder, checked, priority))
        return got

    def grant_in(
        self, cur: Any, holder: Holder, weights: Mapping[str, int], priority: int = 0
    ) -> Lease | None:
        """SQLite: a lease granted in the write transaction of the DBAPI cursor ``cur`` (a
        caller's, committed by the caller), when nobody waits and it fits as things are;
        ``None``: ask with ``request``. See ``_folded.py``."""
        return folded.grant_in(self, cur, holder, weights, priority)

    def release_in(self, cur: Any, leases: Sequence[Lease]) -> bool:
        """SQLite: ``leases`` released in the write transaction of ``cur`` when nobody waits
        in their pools; False: nothing written, release them with ``release_many``."""
        return folded.release_in(self, cur, leases)

    def _request_fast(
        self,
        conn: Connection,
        holder: Holder,
        weights: Mapping[str, int],
        priority: int,
        *,
        external: bool = False,
    ) -> Lease | Slow:
        """Grant at once when nobody waits in these pools and the request fits as things are
        (expired leases still count: reclaiming them is the queue path's job)."""
        cur = self._hot.cursor(conn)
        together = None
        if not external or conn in self._write_locked:  # SQLite: holds the write lock
            together = self._hot.lock_with_usage(cur, sorted(weights))
        if together is None:
            rows = [r for r in self._lock(conn, weights, external=external) if r.name in weights]
            usage = None
        else:
            rows, held, waiting = together
            usage = (held, waiting)
        now = self.clock()  # read after the lock: a bucket is never refilled to a past time
        if len(rows) < len(weights):
            return SLOW  # a pool row is missing: the queue path creates it
        states, waiting = self._states(cur, rows, now, usage=usage)
        if waiting or fair.blocked_by(states, fair.Waiter(holder, weights, priority, 0)):
            return SLOW
        lease = self._grant(
            cur, holder, weights, owner=self.owner, priority=priority, now=now, delivered=True
        )
        if lease is None:
            return SLOW  # the holder has a lease: the queue path returns it
        before = {name: state.tokens for name, state in states.items()}
        for name, weight in weights.items():
            states[name].tokens -= weight
        self._save_buckets(cur, before, states, now)
        return lease

    def _request_one_trip(
        self,
        fast: PgOneTrip | SqliteDirect,
        holder: Holder,
        weights: Mapping[str, int],
        priority: int,
    ) -> Lease | Slow:
        """``_request_fast`` on the hot path's own connection: on PostgreSQL in one or two
        round trips (``_pgfast.py``), on SQLite on bare sqlite3 (``_sqlitefast.py``)."""
        if isinstance(fast, PgOneTrip) and self._slots_only(holder, weights):
            now = self.clock()
            values, _, ttl = self._new_lease(holder, weights, priority, now)
            capacities = {n: self._capacities.get(n, self.specs[n].slots) for n in weights}
            token = fast.grant_if_fits(values, weights, capacities, now)
            if token is not None:
                return Lease(holder, dict(weights), token, now + ttl, now)
        rows, usage = fast.lock_with_usage(sorted(weights))
        now = self.clock()  # read after the lock: a bucket is never refilled to a past time
        states, waiting = self._states(None, rows, now, usage=usage)
        if (
            len(rows) < len(weights)  # a pool row is missing: the queue path creates it
            or waiting
            or fair.blocked_by(states, fair.Waiter(holder, weights, priority, 0))
        ):
            fast.rollback()
            return SLOW
        values, buckets, ttl = self._new_lease(holder, weights, priority, now, states)
        token = fast.insert_and_commit(values, weights, buckets, now)
        if token is None:
            return SLOW  # the holder has a lease: the queue path returns it
        return Lease(holder, dict(weights), token, now + ttl, now)

    def _slots_only(self, holder: Holder, weights: Mapping[str, int]) -> bool:
        """Whether slots are the only limit of each pool of ``weights`` for ``holder``: no
        rate, no cap of its project or domain (``fair.blocked_by`` checks nothing else)."""
        for name in weights:
            spec = self.specs[name]
            if (
                spec.rate is not None
                or spec.project_cap(holder.project) is not None
                or spec.domain_cap(holder.domain) is not None
            ):
                return False
        return True

    def _request_queued(
        self,
        conn: Connection,
        holder: Holder,
        weights: Mapping[str, int],
        priority: int,
        *,
        external: bool = False,
    ) -> Lease | None:
        rows = self._lock(conn, None, external=external)
        now = self.clock()
        missing = set(weights) - {row.name for row in rows}
        if missing:
            self._insert_pool_rows(conn, missing, now)
        for lease in self._leases(conn, holder_is(L, holder)):
            if lease.expires_at >= now:
                return self._pick_up(conn, lease, now)
        ttl = self.waiter_ttl
        row = conn.execute(sa.select(W.c.seq, W.c.weights).where(holder_is(W, holder))).first()
        if row is not None and json.loads(row.weights) != dict(weights):
            self._delete_waiters(conn, W.c.seq == row.seq)  # it asks for something else now
            row = None
        if row is None:
            seq = conn.execute(
                W.insert()
                .values(
                    execution_id=holder.execution_id,
                    node_id=holder.node_id,
                    attempt=holder.attempt,
                    project=holder.project,
                    domain=holder.domain,
                    owner=self.owner,
                    priority=priority,
                    weights=json.dumps(dict(weights), sort_keys=True),
                    enqueued_at=now,
                    expires_at=now + ttl,
                    ttl=ttl,
                    skips=0,
                )
                .returning(W.c.seq)
            ).scalar_one()
            conn.execute(
                WS.insert(),
                [
                    {
                        "pool": name,
                        "seq": seq,
                        "weight": weight,
                        "project": holder.project,
                        "priority": priority,
                    }
                    for name, weight in weights.items()
                ],
            )
        else:
            conn.execute(
                W.update()
                .where(W.c.seq == row.seq)
                .values(expires_at=now + ttl, ttl=ttl, owner=self.owner, priority=priority)
            )
            conn.execute(WS.update().where(WS.c.seq == row.seq).values(priority=priority))
        for lease in self._pass(conn, now, caller=holder):
            if lease.holder.key == holder.key:
                return lease
        return None

    def poll(
        self, *, execution_id: str | None = None, conn: Connection | None = None
    ) -> list[Lease]:
        """Keep this owner's waiters alive, run a pass when it would grant something (buckets
        refill, pushbacks end and leases expire with time, not with a call), and return the
        leases granted to this owner's waiters that it has not been given yet.

        Call it every loop tick while this process has waiters, and at least every
        ``renew_interval``: a waiter not renewed for ``waiter_ttl`` leaves the queue, and a
        lease granted to it by another process expires unless picked up by then (it lives
        its full TTL from the pick-up). Cheap when there is nothing to
        do: it only reads, so polling processes do not take turns at the write lock.

        ``execution_id``: return only that execution's leases; the others stay for a poll
        without it or with theirs (when one manager serves several executions, each asks
        for its own).
        """
        now = self.clock()
        keepalive = now >= self._keepalive_at
        run_pass = True
        if conn is None:
            undelivered, would_grant, waiters = self._read(
                lambda c: self._poll_check(c, now, execution_id)
            )
            if not (undelivered or would_grant or (keepalive and waiters)):
                return []
            # only leases to pick up (another process's pass granted them, and its NOTIFY
            # brought us here): no pool lock, no pass
            run_pass = would_grant or (keepalive and waiters)

        def work(c: Connection, external: bool) -> list[Lease]:
            cur = self._hot.cursor(c)
            handed: list[Lease] = []
            if run_pass and self._hot.waiting(cur, None):
                self._lock(c, None, external=external)
                at = self.clock()  # after the lock: another process may have granted meanwhile
                if keepalive:
                    c.execute(
                        W.update()
                        .where(W.c.owner == self.owner)
                        .values(expires_at=at + self.waiter_ttl, ttl=self.waiter_ttl)
                    )
                handed = self._pass(
                    c, at, executions=None if execution_id is None else {execution_id}
                )
            # picked up: the lease now lives its full TTL (it had the waiter's pickup time).
            # An expired grant is not picked up: a pass reclaims it (its waiter's owner did
            # not come in time, or so the other holders must assume).
            picked = self._hot.pick_up(cur, self.owner, execution_id, self.clock())
            return handed + [
                Lease(
                    Holder(execution, node, attempt, project, domain),
                    weights,
                    token,
                    float(expires_at),
                    float(acquired_at),
                )
                for (
                    token,
                    execution,
                    node,
                    attempt,
                    project,
                    domain,
                    expires_at,
                    acquired_at,
                    weights,
                ) in picked
            ]

        got = self._tx(conn, work)
        if keepalive:
            self._keepalive_at = now + self._keepalive_every
        return got

    def _poll_check(
        self, conn: Connection, now: float, execution_id: str | None
    ) -> tuple[bool, bool, bool]:
        """Read only: are there leases to deliver to this owner, would a pass grant anything
        (or reclaim an expired lease), does anybody wait?"""
        cur = self._hot.cursor(conn)
        undelivered, waiting = self._hot.poll_check(cur, self.owner, execution_id)
        if not waiting:
            return undelivered, False, False
        expired = conn.execute(sa.select(L.c.token).where(L.c.expires_at < now).limit(1)).first()
        if expired is not None:
            return undelivered, True, True
        queued = self._queued(conn, limited=True)
        states, _ = self._states(cur, self._hot.lock(cur, None, write=False), now)
        decided = fair.plan(states, [q.waiter for q in queued], max_skips=self.max_skips)
        return undelivered, bool(decided.granted), True

    def _pick_up(self, conn: Connection, lease: Lease, now: float) -> Lease:
        """Mark ``lease`` delivered; it lives its full TTL from now."""
        expires = conn.execute(
            L.update()
            .where(L.c.token == lease.token)
            .values(delivered=True, expires_at=now + L.c.ttl)
            .returning(L.c.expires_at)
        ).scalar_one()
        return dataclasses.replace(lease, expires_at=float(expires))

    def missing(self, holders: Sequence[Holder]) -> list[Holder]:
        """Those of ``holders`` that neither wait in a queue nor hold a lease (granted or
        not picked up yet): their waiter left the queue because this owner did not keep it
        alive in time (a stalled process). The caller asks for them again (``request``)."""
        if not holders:
            return []

        def work(conn: Connection) -> list[Holder]:
            found: set[tuple[str, str, int]] = set()
            for table in (W, L):
                for row in conn.execute(
                    sa.select(table.c.execution_id, table.c.node_id, table.c.attempt).where(
                        table.c.execution_id.in_(sorted({h.execution_id for h in holders}))
                    )
                ).all():
                    found.add((row.execution_id, row.node_id, row.attempt))
            return [h for h in holders if h.key not in found]

        return self._read(work)

    # -- leases held ----------------------------------------------------------------------

    def renew(self, lease: Lease, *, conn: Connection | None = None) -> Lease | None:
        """Extend ``lease`` by its TTL. ``None`` when it expired, or was released or reclaimed:
        the holder has lost its slots and must stop using the service."""
        return self.renew_many([lease], conn=conn)[0]

    def renew_many(
        self, leases: Sequence[Lease], *, conn: Connection | None = None
    ) -> list[Lease | None]:
        """``renew`` for several leases in one statement; results in the same order."""
        if not leases:
            return []
        tokens = [lease.token for lease in leases]

        def work(c: Connection, external: bool) -> dict[int, float]:
            return self._hot.renew(self._hot.cursor(c), tokens, self.clock())

        renewed = self._tx(conn, work)
        return [
            dataclasses.replace(lease, expires_at=renewed[lease.token])
            if lease.token in renewed
            else None
            for lease in leases
        ]

    def release(
        self, lease: Lease, *, execution_id: str | None = None, conn: Connection | None = None
    ) -> list[Lease]:
        """Give the slots of ``lease`` back. A stale lease (expired and reclaimed, released
        already) is a no-op: its token is never reused, so it cannot free anybody's slots.

        When somebody waits in its pools, a pass hands the slots on at once; the result is
        what went to this owner's waiters of the lease's execution (or of ``execution_id``);
        grants to other waiters are picked up by ``poll``."""
        return self.release_many([lease], execution_id=execution_id, conn=conn)

    def release_many(
        self,
        leases: Sequence[Lease],
        *,
        execution_id: str | None = None,
        conn: Connection | None = None,
    ) -> list[Lease]:
        """``release`` for several leases in one transaction."""
        if not leases:
            return []
        names = sorted({name for lease in leases for name in lease.weights} & self.specs.keys())
        tokens = [lease.token for lease in leases]
        executions = (
            {execution_id}
            if execution_id is not None
            else {lease.holder.execution_id for lease in leases}
        )

        def work(c: Connection, external: bool, everything: bool = False) -> list[Lease]:
            cur = self._hot.cursor(c)
            if not self._sqlite:
                # PostgreSQL: the lease's own pools (in name order), so that a pass running
                # now sees this release or waits for it; a caller's transaction and a release
                # that a pass must follow take every pool (the pass locks them all, and the
                # locks of one transaction are taken in one global order: name order)
                self._lock(c, None if everything else names, external=external)
            elif external and c not in self._write_locked:
                self._lock(c, names, external=external)  # SQLite: takes the write lock
            # Nobody waits: the transaction only gives slots back, and need not wait for the
            # disk on PostgreSQL (see ``delete_leases``); a pass that follows may grant, and
            # then it does.
            deleted, waiting = self._hot.delete_leases(cur, tokens, names, relaxed=not external)
            if not (deleted and waiting):
                return []
            if not (self._sqlite or external or everything):
                # waiters are only ever queued under the lock of every pool, so with ours
                # held this is sure: somebody waits, and the pass needs every pool locked,
                # some of which sort before ours. Roll back and start over in order.
                raise _PassNeeded
            return self._pass(c, self.clock(), executions=executions)

        if conn is not None or self._one_trip is None or not names:
            return self._tx(conn, work)
        # on the hot path's own connection when nobody waits behind the leases (PostgreSQL:
        # one round trip)
        done = self._one_trip_run(lambda fast: fast.release(tokens, names))
        if done is not None and not done[1]:
            return []
        if done is not None:  # somebody waits: nothing was released; now with the pass
            return self._run(lambda c: work(c, False, everything=True))
        try:
            return self._run(lambda c: work(c, False))
        except _PassNeeded:
            return self._run(lambda c: work(c, False, everything=True))

    def cancel(
        self, holder: Holder, *, execution_id: str | None = None, conn: Connection | None = None
    ) -> list[Lease]:
        """``holder`` wants nothing any more: leave every queue, and release its lease if it
        was granted one (even one not picked up yet). Returns what the freed capacity went to
        among this owner's waiters of the holder's execution (or of ``execution_id``)."""
        executions = {holder.execution_id if execution_id is None else execution_id}
        return self._drop(holder_is(W, holder), holder_is(L, holder), conn, executions)

    def release_execution(self, execution_id: str, *, conn: Connection | None = None) -> None:
        """Drop every lease and waiter of an execution, whoever owns them (an engine resuming
        an execution that a dead engine owned). What the freed capacity goes to is picked up
        by ``poll``."""
        waiters, leases = W.c.execution_id == execution_id, L.c.execution_id == execution_id
        self._drop(waiters, leases, conn, ())

    def release_all(self, *, conn: Connection | None = None) -> None:
        """Drop every lease and waiter of this owner (the engine is shutting down)."""
        self._drop(W.c.owner == self.owner, L.c.owner == self.owner, conn, ())

    def _drop(
        self,
        waiters: sa.ColumnElement[bool],
        leases: sa.ColumnElement[bool],
        conn: Connection | None,
        executions: Collection[str],
    ) -> list[Lease]:
        def work(c: Connection, external: bool) -> list[Lease]:
            self._lock(c, None, external=external)
            self._delete_waiters(c, waiters)
            self._delete_leases(c, leases)
            return self._pass(c, self.clock(), executions=executions)

        return self._tx(conn, work)

    def reap_expired(self, *, conn: Connection | None = None) -> int:
        """Reclaim every expired lease (and drop waiters not seen for a TTL), then grant what
        the freed capacity allows. Returns how many leases were reclaimed. Passes reclaim
        anyway whenever a waiter needs the capacity; this is for housekeeping and display."""

        def work(c: Connection, external: bool) -> int:
            self._lock(c, None, external=external)
            now = self.clock()
            reaped = self._reap(c, now, sweep=True)
            self._pass(c, now)
            return reaped

        return self._tx(conn, work)

    def _own_rows(
        self, conn: Connection, names: Collection[str], external: bool
    ) -> tuple[list[PoolRow], float]:
        """The rows of ``names`` locked (created first when missing), and the time read
        after the lock."""
        rows = [r for r in self._lock(conn, names, external=external) if r.name in names]
        now = self.clock()
        if len(rows) < len(names):
            self._insert_pool_rows(conn, set(names) - {r.name for r in rows}, now)
            rows = [r for r in self._lock(conn, names, external=external) if r.name in names]
        return rows, now

    def pushback(
        self,
        pool: str,
        seconds: float,
        *,
        conn: Connection | None = None,
        holder: Holder | None = None,
    ) -> float:
        """The service behind ``pool`` pushed back (HTTP 429 with Retry-After, a throttling
        error): grant nothing new in it for ``seconds`` and empty its bucket, which refills
        from then on. Leases held are not touched. Returns when the pause ends. It is kept
        in the pool's recent pushbacks (``pushbacks``), with ``holder``, the attempt whose
        call was pushed back, when known."""
        self._spec(pool)
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise PoolError(f"pool '{pool}': pushback seconds must be >= 0, got {seconds!r}")
        # Seen at once by this process's other threads (``pause_left``), before the write
        # below waits for the manager's connection and the database's lock.
        self._note_pause(pool, self.clock() + seconds)

        def work(c: Connection, external: bool) -> float:
            rows, now = self._own_rows(c, [pool], external)
            until = max(rows[0].paused_until, now + seconds)
            c.execute(
                P.update()
                .where(P.c.name == pool)
                .values(paused_until=until, tokens=0.0, refilled_at=until)
            )
            pb.record(c, pool, now, seconds, until, holder)
            return float(until)

        return self._tx(conn, work)

    def take_tokens(self, weights: Mapping[str, int], *, conn: Connection | None = None) -> float:
        """Tokens for one more call made under a lease already held (a retry, a job's status
        poll): each rate-limited pool of ``weights`` gives its weight now, going into debt
        when its bucket is short (so grants wait until the debt is refilled). Returns the
        seconds the caller must wait before making the call for the rates to hold, pauses
        included; 0 when the tokens were there. Pools without a rate are not touched.
        All weights 0: takes nothing and returns how long a pushback in force still lasts
        in those pools (``pause_left``), a check before a call a grant paid for."""
        for name in weights:
            self._spec(name)
        if all(weight == 0 for weight in weights.values()):
            return self.pause_left(weights)
        limited = {n: w for n, w in weights.items() if self.specs[n].rate is not None}
        if not limited:
            return 0.0

        def work(c: Connection, external: bool) -> float:
            rows, now = self._own_rows(c, limited, external)
            cur = self._hot.cursor(c)
            wait = 0.0
            for row in rows:
                spec = self.specs[row.name]
                assert spec.rate is not None
                tokens = refill(spec, row, now) - limited[row.name]
                self._hot.save_bucket(cur, row.name, tokens, now)
                ready_at = max(now, row.refilled_at) + max(0.0, -tokens) / spec.rate
                wait = max(wait, ready_at - now)
            return wait

        return self._tx(conn, work)

    def pause_left(self, names: Iterable[str]) -> float:
        """Seconds until every pushback in force in ``names`` ends (0: none). Reads only."""
        wanted = sorted({self._spec(name).name for name in names})
        if not wanted:
            return 0.0
        local = self._local_pause(wanted)
        if local > 0:
            return local

        def work(conn: Connection) -> float:
            until = conn.execute(
                sa.select(sa.func.max(P.c.paused_until)).where(P.c.name.in_(wanted))
            ).scalar()
            return max(0.0, float(until or 0.0) - self.clock())

        # again after the read, which may have waited for the connection while this process
        # noted a pushback
        return max(self._read(work), self._local_pause(wanted))

    def next_grant_time(self) -> float | None:
        """When a pool that has waiters but too few tokens, or a pushback, can grant again (a
        hint for when to ``poll``); ``None`` when no waiter waits on time."""

        def work(conn: Connection) -> float | None:
            now = self.clock()
            least = {
                pool: int(weight)
                for pool, weight in conn.execute(
                    sa.select(WS.c.pool, sa.func.min(WS.c.weight)).group_by(WS.c.pool)
                ).all()
            }
            soonest: float | None = None
            for row in self._hot.lock(self._hot.cursor(conn), None, write=False):
                spec = self.specs.get(row.name)
                if spec is None or row.name not in least:
                    continue
                at: float | None = None
                if spec.rate is not None:
                    missing = least[row.name] - refill(spec, row, now)
                    if missing > 0 or row.paused_until > now:
                        at = max(now, row.refilled_at) + max(0.0, missing) / spec.rate
                elif row.paused_until > now:
                    at = row.paused_until
                if at is not None and (soonest is None or at < soonest):
                    soonest = at
            return soonest

        return self._read(work)

    # -- reading --------------------------------------------------------------------------

    def _order(self, conn: Connection, now: float) -> tuple[list[Queued], set[int]]:
        """Every waiter in service order, and the seqs that reserve capacity."""
        queued = self._queued(conn, limited=False)
        cur = self._hot.cursor(conn)
        states, _ = self._states(cur, self._hot.lock(cur, None, write=False), now)
        by_seq = {q.waiter.seq: q for q in queued}
        order = fair.service_order(states, [q.waiter for q in queued])
        reserving = {q.waiter.seq for q in queued if q.waiter.skips >= self.max_skips}
        return [by_seq[w.seq] for w in order], reserving

    def waiting_position(self, holder: Holder) -> dict[str, int]:
        """``holder``'s place (1 = next) in the queue of each pool it waits for; empty when it
        is not waiting. Reads every waiter: call it to show a status, not on every tick."""

        def work(conn: Connection) -> dict[str, int]:
            order, _ = self._order(conn, self.clock())
            seen: dict[str, int] = {}
            for queued in order:
                for name in queued.waiter.weights:
                    seen[name] = seen.get(name, 0) + 1
                if queued.waiter.holder.key == holder.key:
                    return {name: seen[name] for name in queued.waiter.weights}
            return {}

        return self._read(work)

    def pushbacks(
        self, names: Iterable[str] | None = None, limit: int = pb.KEEP
    ) -> dict[str, list[pb.Pushback]]:
        """Each pool's (or those of ``names``) last ``limit`` pushbacks, newest first."""
        wanted = sorted(self.specs) if names is None else [self._spec(n).name for n in names]
        return self._read(lambda conn: pb.recent(conn, wanted, limit))

    def leases(self) -> list[Lease]:
        """Every lease of this owner (delivered or not)."""
        return self._read(lambda conn: self._leases(conn, L.c.owner == self.owner))

    def status(self, names: Iterable[str] | None = None) -> list[PoolStatus]:
        """Each configured pool (or those of ``names``): capacity, rate, in use, holders with
        their times, waiters in the order they would be served."""
        wanted = sorted(self.specs) if names is None else [self._spec(n).name for n in names]

        def work(conn: Connection) -> list[PoolStatus]:
            now = self.clock()
            rows = {
                row.name: row for row in self._hot.lock(self._hot.cursor(conn), wanted, write=False)
            }
            holders: dict[str, list[HolderStatus]] = {n: [] for n in wanted}
            for row in conn.execute(
                sa.select(L, G.c.pool, G.c.weight)
                .join(G, G.c.token == L.c.token)
                .where(G.c.pool.in_(wanted))
                .order_by(L.c.acquired_at, L.c.token)
            ).all():
                holders[row.pool].append(
                    HolderStatus(
                        holder_of(row),
                        row.weight,
                        row.token,
                        row.owner,
                        row.acquired_at,
                        row.expires_at,
                    )
                )
            order, reserving = self._order(conn, now)
            waiters: dict[str, list[WaiterStatus]] = {n: [] for n in wanted}
            for queued in order:
                waiter = queued.waiter
                for name, weight in waiter.weights.items():
                    if name in waiters:
                        waiters[name].append(
                            WaiterStatus(
                                len(waiters[name]) + 1,
                                waiter.holder,
                                weight,
                                waiter.priority,
                                queued.owner,
                                queued.enqueued_at,
                                waiter.skips,
                                waiter.seq in reserving,
                            )
                        )
            result = []
            for name in wanted:
                spec = self.specs[name]
                pool_row = rows.get(name)
                tokens = None
                paused = None
                if pool_row is not None:
                    if spec.rate is not None:
                        tokens = refill(spec, pool_row, now)
                    if pool_row.paused_until > now:
                        paused = pool_row.paused_until
                in_use = sum(h.weight for h in holders[name])
                result.append(
                    PoolStatus(
                        spec,
                        in_use,
                        tokens,
                        paused,
                        tuple(holders[name]),
                        tuple(waiters[name]),
                        self._capacities.get(name),
                    )
                )
            return result

        return self._read(work)
