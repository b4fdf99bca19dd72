"""Resource pools: leased, atomic, fair quotas that protect external services.

A pool (``[pools.<name>]`` in the config file, a ``PoolSpec`` here) has ``slots`` of
concurrency, optionally a token-bucket ``rate`` with a ``burst``, per-project and per-domain
caps, fair-share weights per project, and a ``lease_ttl``. Its state lives in the metadata
database (tables in ``_schema.py``, migration 0003), so every engine process on every host that
uses the database shares it; every change is one short transaction (``BEGIN IMMEDIATE`` on
SQLite; on PostgreSQL ``SELECT … FOR UPDATE`` on the pool rows, always in name order).

The API (``PoolManager(engine, specs, owner="host:pid", clock=time.time)``)::

    request(holder, weights, priority=0) -> Lease | None     # all pools or none; else queued
    poll(execution_id=None) -> list[Lease]  # grants to this owner's waiters not handed out yet
    missing(holders) -> list[Holder]   # neither waiting nor granted: ask again
    waiting_position(holder) -> dict[str, int]   # 1-based place in each pool's queue
    renew(lease) -> Lease | None; renew_many(leases) -> list[Lease | None]  # None: lost it
    release(lease) / release_many(leases) -> list[Lease]     # stale token: no-op
    cancel(holder) -> list[Lease]      # leave the queues, release a lease if granted
    release_execution(execution_id) / release_all() -> None
    reap_expired() -> int
    pushback(pool, seconds) -> float   # no new grants until then; the bucket empties
    take_tokens(weights) -> float      # one more call under a held lease: seconds to wait first
    pause_left(names) -> float         # seconds a pushback in force still lasts (all weights 0
                                       # in take_tokens ask this)
    next_grant_time() -> float | None  # when a rate-limited / paused pool can grant again
    set_capacity(name, slots) -> int | None  # grant at most slots (0..spec's; None: the
                                       # spec's), for a pool a backend sizes; capacity(name)
    status(names=None) -> list[PoolStatus]; leases() -> list[Lease]
    validate_request(weights, project=, domain=) -> dict[str, int]  # PoolError if never grantable
    on_grant(wake) -> unsubscribe   # PostgreSQL: wake() when another process grants ours
    begin() -> context manager of a Connection; close()

Every call that frees capacity runs a pass over the queues at once. A grant is handed out
once: ``request`` returns the caller's own; ``release`` and ``cancel`` return those that went to
this owner's waiters of the same execution (or of ``execution_id=``); ``poll`` returns all the
others of this owner (or of ``execution_id=``), including grants made by other processes.

Every mutating call takes ``conn=``: it then runs in that connection's transaction (the caller
commits), so a loop turn's pool calls and its own writes can share one commit. Open such a
transaction with ``begin()`` (``BEGIN IMMEDIATE`` on SQLite); with another one SQLite takes the
write lock by an UPDATE of the pool rows. Inside it, pass ``conn=`` to every pool call: on
SQLite a call in a transaction of its own would wait for the write lock that the open
transaction holds. Otherwise a manager uses one connection of its own, meant for one thread
(calls from several threads take turns).

Semantics:

- **Atomic**: a request for several pools takes all of them or none, in one transaction that
  checks every pool's slots, tokens, pushback and caps. A lease is never granted beyond a
  pool's slots or a cap, in any interleaving of any number of processes.
- **Waiters are owned and kept alive**: ``poll`` renews this owner's waiters every
  ``renew_interval`` (a third of the shortest lease TTL); one not renewed for ``waiter_ttl``
  (two renew intervals) leaves the queue, and a grant made to another owner's waiter expires
  when that waiter would have, unless its owner picks it up (then it lives its full TTL).
  Before granting, a pass drops the waiters and the grants not picked up of owners that
  ``is_dead`` says are gone (``host:pid`` of this host with no such process): a dead engine's
  waiters never receive a grant. ``missing(holders)`` tells an owner which of its waiters were
  dropped (it stalled), to ``request`` them again.
- **Leases**: a lease has a holder (execution, node, attempt), a fencing ``token`` (unique,
  never reused, increasing in grant order in each pool) and an expiry, renewed by the holder.
  An expired lease is reclaimed by the next pass that needs its capacity, or by
  ``reap_expired``; once reclaimed, its renew returns ``None`` and its release does nothing.
- **Rates**: a grant of weight w takes w tokens from the pool's bucket, which refills at
  ``rate`` per second up to ``burst``. ``pushback`` empties it and pauses the pool. Every call
  reads its clock after taking the pool locks, and a bucket's ``refilled_at`` never moves back,
  so clocks a little apart on several hosts cannot refill the same time twice. A lease's
  ``acquired_at`` is its grant time. A grant pays for one call; each further call under the
  lease (a retry, a status poll) pays with ``take_tokens``, which may leave the bucket in debt
  and says how long to wait, so the rate counts calls, not attempts.

The fairness rule (``_fair.py``), applied by every pass:

1. Waiters are considered one at a time: highest priority first; among equal priorities the
   project with the lowest share, where a waiter's share is the largest, over the pools it
   asks for, of ``slots its project holds there / the project's weight there``
   (``project_weights``, default 1); then arrival. Shares are updated after each grant, so
   projects take turns in proportion to their weights and no tenant starves the others.
2. A waiter is granted when all of its pools have room (slots after reservations, tokens, no
   pushback, project and domain caps).
3. No head-of-line blocking: a waiter that does not fit is passed over; later ones that fit
   are granted.
4. No starvation: a waiter blocked on slots or tokens counts a skip each pass in which a
   later waiter is granted in one of its pools. From ``max_skips`` (default 8) skips on it
   reserves its weights: nobody considered after it may use that capacity, so freed slots
   gather until it fits. Waiters held back by their own cap or by a pushback do not reserve.

A pass looks at the first ``lookahead`` (default 64) waiters of each project in each pool.

How an engine uses it: ``request`` when an attempt is ready to run (a ``None`` means queued:
show ``waiting_position``); ``poll`` every loop tick while it has waiters (and at the time
``next_grant_time`` gives) and start what it returns; ``renew_many`` the running leases every
``lease_ttl / 3``; every renew interval, ``request`` again the ``missing`` waiters;
``release`` when the attempt stops for any reason — success, failure,
cancel, timeout, and before a retry's backoff (the next attempt requests again); ``cancel``
for a queued attempt that is cancelled; ``pushback`` when a backend reports throttling;
``release_execution`` when resuming an execution another engine owned; ``release_all`` on
shutdown.
"""

from taskfabric.pools._config import specs_from_config
from taskfabric.pools._manager import PoolManager
from taskfabric.pools._spec import (
    ANY,
    Holder,
    HolderStatus,
    Lease,
    PoolError,
    PoolSpec,
    PoolStatus,
    WaiterStatus,
)

__all__ = [
    "ANY",
    "Holder",
    "HolderStatus",
    "Lease",
    "PoolError",
    "PoolManager",
    "PoolSpec",
    "PoolStatus",
    "WaiterStatus",
    "specs_from_config",
]
