"""A grant and a release in a caller's write transaction on a DBAPI connection.

The engine records an attempt's start, and the end of the attempt before it, in one
transaction; a grant on a free pool and a release that nobody waits behind are a few
statements more in that transaction (engine/_pools.py) instead of two commits of their own.
Only the cases that need no pass: when somebody waits, or a request does not fit as things
are, these return ``None`` and the caller goes the ordinary way (`PoolManager.request`,
`release_many`), in transactions of their own.

SQLite only for now (``MetadataStore.open_write``): the transaction holds the write lock
(``BEGIN IMMEDIATE``), so the usage read here cannot change before the commit. The
statements are ``HotSql``'s, which also run on PostgreSQL, where a caller would first have
to lock the pools' rows in one global order across the transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from taskfabric.pools import _fair as fair
from taskfabric.pools._spec import Holder, Lease
from taskfabric.pools._sqlitefast import insert_lease, release_unless_waiting

if TYPE_CHECKING:
    from taskfabric.pools._manager import PoolManager


def grant_in(
    manager: PoolManager,
    cur: Any,
    holder: Holder,
    weights: Mapping[str, int],
    priority: int = 0,
) -> Lease | None:
    """A lease on every pool of ``weights``, inserted in the transaction of ``cur``, when
    nobody waits in those pools and it fits as things are; ``None`` otherwise (nothing was
    written). Raises ``PoolError`` for a request that could never be granted."""
    checked = manager._check_request(holder, weights)
    hot = manager._hot
    if hot.postgres:
        raise NotImplementedError("grant_in: SQLite only (see the module docstring)")
    rows, held, waiting = hot.lock_with_usage(cur, sorted(checked)) or ([], [], True)
    if waiting or len(rows) < len(checked):
        return None  # a pool row is missing: the ordinary path creates it
    now = manager.clock()  # read after the lock: a bucket is never refilled to a past time
    states, _ = manager._states(cur, rows, now, usage=(held, waiting))
    if fair.blocked_by(states, fair.Waiter(holder, checked, priority, 0)):
        return None
    values, buckets, ttl = manager._new_lease(holder, checked, priority, now, states)
    token = insert_lease(cur, values, checked, buckets, now)
    if token is None:
        return None  # the holder has a lease: the ordinary path returns it
    return Lease(holder, dict(checked), token, now + ttl, now)


def release_in(manager: PoolManager, cur: Any, leases: Sequence[Lease]) -> bool:
    """Delete ``leases`` in the transaction of ``cur`` when nobody waits in their pools
    (True); False when somebody does (nothing was written): release them the ordinary way,
    whose pass hands the slots on. Stale leases are no-ops, as in ``release``."""
    if manager._hot.postgres:
        raise NotImplementedError("release_in: SQLite only (see the module docstring)")
    names = sorted({name for lease in leases for name in lease.weights} & manager.specs.keys())
    if not names:
        return False
    _, waiting = release_unless_waiting(cur, [lease.token for lease in leases], names)
    return not waiting
