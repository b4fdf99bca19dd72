"""The engine's side of resource pools: an attempt runs only while it holds its pools.

An attempt asks for the pools of its task (`@task(pools=...)`) and of its backend
(`Backend.pool_requests`) when it is about to start. Granted: it starts. Not granted: it waits
in the pools' queues (its node shows "waiting for pool X, position N") and starts when a pass
grants it. Its lease is released the moment the attempt stops — success, failure, timeout,
cancel, or before the backoff of a retry (the next attempt asks again) — and renewed while it
runs; an attempt that loses its lease (the engine was stalled past the TTL) is stopped and
retried rather than run on over the pool's limit.

On SQLite a grant on a free pool goes in the transaction that records the attempt's start
(with the ends recorded before it), and a release in the one that records the attempt's end:
no commit of their own (`MetadataStore.open_write`, pools/_folded.py). Either is in the
database exactly when what it goes with is; a `kill -9` before that commit loses both
together (the lease expires at its TTL, as a dead holder's). When somebody waits in the
pools, or a request does not fit as things are, the grant or release takes the ordinary path
(transactions of its own, with the pass that hands slots on).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from taskfabric.logs import get_logger

if TYPE_CHECKING:
    from taskfabric.engine._holds import HoldService
    from taskfabric.engine._state import NodeState
    from taskfabric.plugin_api import TaskAttempt

# taskfabric.pools.Lease and PoolManager; Any here keeps the engine importable and
# type-checkable on its own (the pools package is loaded only when pools are configured).
Lease = Any
PoolManager = Any

log = get_logger("taskfabric.pools")


class PoolGate:
    """Pool leases of one execution's attempts."""

    def __init__(
        self,
        manager: PoolManager,
        *,
        execution_id: str,
        project: str,
        domain: str,
        renew_seconds: float,
        holds: HoldService | None = None,
        metadata: Any = None,
    ) -> None:
        self.manager = manager
        #: SQLite: the store whose write transactions carry our grants and releases
        self._metadata = metadata if metadata is not None and metadata.shares_writes else None
        self._cur: Any = None  # the cursor of the write transaction that we opened
        self._pending: list[Lease] = []  # releases for the next commit
        self._releasing: list[Lease] = []  # released in the transaction open now
        self._blocked: list[Lease] = []  # somebody waits behind them: released after it
        self._handed: list[Lease] = []  # granted to our waiters by those releases
        self.holds = holds
        self.execution_id = execution_id
        self.project = project
        self.domain = domain
        self.renew_seconds = renew_seconds
        self.waiting: dict[tuple[str, str, int], NodeState] = {}
        self._asked_at: dict[tuple[str, str, int], float] = {}
        self._weights: dict[tuple[str, str, int], Mapping[str, int]] = {}
        self._last_check = time.monotonic()
        self.held: dict[tuple[str, str, int], tuple[NodeState, Lease]] = {}
        self._last_renew = time.monotonic()
        self._last_poll = 0.0
        self._notified = False

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` when another engine process grants one of our waiters a lease
        (PostgreSQL), so the next `poll` runs at once; returns the unsubscribe."""

        def notified() -> None:
            self._notified = True
            wake()

        unsubscribe: Callable[[], None] = self.manager.on_grant(notified)
        return unsubscribe

    def attach(self, attempt: TaskAttempt) -> None:
        """Let the attempt's code hold pools itself (`taskfabric.hold`): in-process, or
        through the channel whose address its process gets in `attempt.env`."""
        if self.holds is not None:
            attempt.env.update(self.holds.attach(attempt))

    def detach(self, attempt_id: str) -> None:
        """The attempt stopped: what its code still holds or waits for is released."""
        if self.holds is not None:
            self.holds.detach(attempt_id)

    def holder(self, ns: NodeState, attempt: int) -> Any:
        from taskfabric.pools import Holder

        return Holder(self.execution_id, ns.full_id, attempt, self.project, self.domain)

    @staticmethod
    def weights(ns: NodeState, backend: Any) -> dict[str, int]:
        assert ns.task is not None
        weights: dict[str, int] = {}
        for req in ns.task.pools:
            weights[req.pool] = weights.get(req.pool, 0) + max(1, req.weight)
        for req in backend.pool_requests(ns.task) if backend is not None else ():
            weights[req.pool] = weights.get(req.pool, 0) + max(1, req.weight)
        return weights

    # -- grants and releases in the commits that record the attempts ------------------

    @property
    def folds(self) -> bool:
        """Whether grants and releases go in the recorder's commits (`before_commit`)."""
        return self._metadata is not None

    def _write_cursor(self) -> Any:
        """The cursor of this thread's write transaction, begun now (the pending releases
        first) unless it is open."""
        metadata = self._metadata
        assert metadata is not None
        if self._cur is not None and not metadata.write_open():
            self.committed(True)  # someone else's apply on this thread committed it
        if self._cur is None:
            self._cur = metadata.open_write().cursor()
            pending, self._pending = self._pending, []
            if pending:
                if self.manager.release_in(self._cur, pending):
                    self._releasing += pending
                else:
                    self._blocked += pending
        return self._cur

    def before_commit(self) -> None:
        """The recorder is about to commit: the pending releases go in its transaction."""
        if self._pending and self._metadata is not None:
            self._write_cursor()

    def committed(self, ok: bool) -> None:
        """The transaction that carried our grants and releases ended (`ok`: committed).
        Releases that somebody waited behind are made now, with their pass."""
        self._cur = None
        if not ok:  # rolled back: those leases are still held
            self._pending[:0] = self._releasing + self._blocked
            self._releasing, self._blocked = [], []
            return
        self._releasing = []
        if self._blocked:
            blocked, self._blocked = self._blocked, []
            self._handed += self.manager.release_many(blocked, execution_id=self.execution_id)

    def settle(self) -> None:
        """Commit the write transaction we opened, if it is open (before any call that
        writes through the manager's own connections, which would wait for its lock)."""
        if self._cur is None or self._metadata is None:
            return
        try:
            self._metadata.close_write()
        except BaseException:
            self.committed(False)
            raise
        self.committed(True)

    @property
    def writing(self) -> bool:
        """A write transaction that we opened is open (the next commit ends it)."""
        return self._cur is not None

    @property
    def pending(self) -> bool:
        """Releases wait for the recorder's next commit."""
        return bool(self._pending)

    def release_pending(self) -> None:
        """Release now, in a transaction of their own, what waits for a commit."""
        self.settle()
        pending, self._pending = self._pending, []
        if pending:
            self._handed += self.manager.release_many(pending, execution_id=self.execution_id)

    # -- attempts ----------------------------------------------------------------------

    def acquire(self, ns: NodeState, attempt: int, weights: Mapping[str, int]) -> bool:
        """True when the attempt may start now; False: it waits (see `granted`)."""
        holder = self.holder(ns, attempt)
        asked_at = time.time()
        lease = None
        if self._metadata is not None:
            lease = self.manager.grant_in(self._write_cursor(), holder, weights)
            if lease is None:
                self.settle()  # the ordinary path: somebody waits, or it does not fit
        if lease is None:
            lease = self.manager.request(holder, weights)
        if lease is not None:
            self.held[holder.key] = (ns, lease)
            self._log_grant(lease, asked_at)
            return True
        self.waiting[holder.key] = ns
        self._asked_at[holder.key] = asked_at
        self._weights[holder.key] = dict(weights)
        return False

    @staticmethod
    def _log_grant(lease: Lease, asked_at: float) -> None:
        # granted_at: when the pool granted it (a pass in any process); got_at - granted_at is
        # how long the grant took to reach this engine (its poll cadence when another
        # process's pass made the grant).
        got_at = time.time()
        log.debug(
            "pool lease granted",
            node_id=lease.holder.node_id,
            attempt=lease.holder.attempt,
            pools=dict(lease.weights),
            token=lease.token,
            asked_at=asked_at,
            granted_at=lease.acquired_at,
            got_at=got_at,
            waited=round(got_at - asked_at, 6),
        )

    def position_text(self, ns: NodeState, attempt: int) -> str:
        positions = self.manager.waiting_position(self.holder(ns, attempt))
        return ", ".join(f"pool {p} (position {n})" for p, n in sorted(positions.items()))

    def granted(self, leases: list[Lease]) -> list[NodeState]:
        """Nodes whose waiting attempts were granted by `leases` (ours only)."""
        started = []
        for lease in leases:
            key = lease.holder.key
            if lease.holder.execution_id != self.execution_id:
                continue
            ns = self.waiting.pop(key, None)
            if ns is None:
                continue
            self._weights.pop(key, None)
            self.held[key] = (ns, lease)
            self._log_grant(lease, self._asked_at.pop(key, lease.acquired_at))
            started.append(ns)
        return started

    def poll(self, *, every: float = 0.05) -> list[NodeState]:
        """Ask the pools for grants to this execution's waiters (at most every `every` s)."""
        handed: list[NodeState] = []
        if self._handed:
            leases, self._handed = self._handed, []
            handed = self.granted(leases)
        if not self.waiting:
            return handed
        now = time.monotonic()
        if now - self._last_poll < every and not self._notified:
            return handed
        self.settle()
        self._notified = False
        self._last_poll = now
        # only this execution's grants: the manager may serve other executions of this
        # process, whose grants are theirs to pick up (taken here, they would be dropped)
        started = handed + self.granted(self.manager.poll(execution_id=self.execution_id))
        if self.waiting and now - self._last_check >= self.renew_seconds:
            self._last_check = now
            started += self._ask_again()
        return started

    def _ask_again(self) -> list[NodeState]:
        """Queue again the waiters that left the queue without a grant: the pools drop a
        waiter (and a grant it did not pick up in time) when its engine does not keep it
        alive for two renew intervals, as after a long stall of this process."""
        holders = [self.holder(ns, key[2]) for key, ns in self.waiting.items()]
        started = []
        for holder in self.manager.missing(holders):
            log.warning(
                "pool waiter was dropped (this engine stalled); queueing it again",
                node_id=holder.node_id,
                attempt=holder.attempt,
            )
            lease = self.manager.request(holder, self._weights[holder.key])
            if lease is not None:
                started += self.granted([lease])
        return started

    def release(self, ns: NodeState, attempt: int) -> list[NodeState]:
        """Release the attempt's lease (or leave the queue); returns nodes granted by it."""
        key = (self.execution_id, ns.full_id, attempt)
        if key in self.waiting:
            self.settle()
            del self.waiting[key]
            self._asked_at.pop(key, None)
            self._weights.pop(key, None)
            return self.granted(self.manager.cancel(self.holder(ns, attempt)))
        held = self.held.pop(key, None)
        if held is None:
            return []
        if self._metadata is not None:  # with the commit that records the attempt's end
            self._pending.append(held[1])
            return []
        return self.granted(self.manager.release(held[1]))

    def renew(self) -> list[NodeState]:
        """Renew running leases when due; returns nodes whose lease was lost."""
        now = time.monotonic()
        if not self.held or now - self._last_renew < self.renew_seconds:
            return []
        self.settle()
        self._last_renew = now
        keys = list(self.held)
        renewed = self.manager.renew_many([self.held[k][1] for k in keys])
        lost = []
        for key, new in zip(keys, renewed, strict=True):
            ns, _ = self.held[key]
            if new is None:
                del self.held[key]
                lost.append(ns)
            else:
                self.held[key] = (ns, new)
        return lost

    def next_wait(self) -> float | None:
        """How long the loop may sleep while attempts wait for pools."""
        if self._handed:
            return 0.0
        if not self.waiting:
            return None
        return 0.05

    def release_everything(self) -> None:
        self.release_pending()
        self._handed.clear()  # their waiters are cancelled below, which frees them
        self._asked_at.clear()
        self._weights.clear()
        for key in list(self.waiting):
            ns = self.waiting.pop(key)
            self.manager.cancel(self.holder(ns, key[2]))
        for _key, (_ns, lease) in list(self.held.items()):
            self.manager.release(lease)
        self.held.clear()
