"""A waiter is owned and kept alive like a lease (issue 14): a dead engine's queued requests
never take the slots that live engines free (SQLite and PostgreSQL)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from pool_helpers import Clock, holder

from taskfabric.pools import Lease, PoolManager, PoolSpec
from taskfabric.pools._owners import owner_is_dead, process_owner

Make = Callable[..., PoolManager]


def granted(lease: Lease | None) -> Lease:
    assert lease is not None, "expected a grant"
    return lease


def waiters(manager: PoolManager) -> list[str]:
    return [w.holder.execution_id for w in manager.status(["p"])[0].waiters]


def holders(manager: PoolManager) -> list[str]:
    return [h.holder.execution_id for h in manager.status(["p"])[0].holders]


def test_a_dead_processs_waiters_never_receive_a_grant(make_manager: Make) -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    host = process_owner().rpartition(":")[0]
    dead_owner = f"{host}:{child.pid}"
    a = make_manager(PoolSpec("p", 2, lease_ttl=30), owner="a")
    b = make_manager(PoolSpec("p", 2, lease_ttl=30), owner=dead_owner)
    running = granted(b.request(holder("b-running"), {"p": 1}))  # b holds one slot
    first = granted(a.request(holder("a-1"), {"p": 1}))
    assert b.request(holder("b-queued"), {"p": 1}) is None
    assert b.request(holder("b-queued-2"), {"p": 1}) is None
    a.release(first)  # b is alive: its first waiter is granted (b picks it up later)
    assert sorted(holders(a)) == ["ex-b-queued", "ex-b-running"]
    assert not owner_is_dead(dead_owner)
    child.kill()
    child.wait()
    assert owner_is_dead(dead_owner) and owner_is_dead(f"{dead_owner}/holds")
    assert not owner_is_dead(f"{process_owner()}/holds") and not owner_is_dead("b")
    # the next pass (any call that asks or frees) drops b's queue and the grant it did not
    # pick up, so a's request, which would have queued behind b's second waiter, is granted
    # at once, without waiting for any TTL
    granted(a.request(holder("a-2"), {"p": 1}))
    assert holders(a) == ["ex-b-running", "ex-a-2"]
    assert waiters(a) == []
    # b's running lease stays until its TTL: the work it covers may outlive the engine
    assert b.renew(running) is not None


def test_a_silent_owners_waiters_leave_after_two_renew_intervals(
    make_manager: Make, clock: Clock
) -> None:
    # "b" names no process of this host, so nothing tells whether it lives: only its keepalive
    a = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="a")
    b = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="b")
    assert a.renew_interval == 10 and a.waiter_ttl == 20
    first = granted(a.request(holder("a-1"), {"p": 1}))
    assert b.request(holder("b-1"), {"p": 1}) is None
    assert b.request(holder("b-2"), {"p": 1}) is None
    assert a.request(holder("a-2"), {"p": 1}) is None
    clock.advance(9)
    b.poll()  # b's keepalive (due every renew interval) renews its waiters: b-1, b-2 live on
    clock.advance(5)
    a.release(first)  # granted to b-1, which b must pick up before its waiter would expire
    lease_b1 = next(h for h in a.status(["p"])[0].holders if h.holder == holder("b-1"))
    assert lease_b1.expires_at == clock.now + 15  # b's keepalive at +9, plus 20
    assert waiters(a) == ["ex-b-2", "ex-a-2"]
    # b falls silent (died on another host). Two renew intervals after its last keepalive
    # its waiters are gone, and so is the grant it never picked up: a gets the slot.
    clock.advance(14.5)
    assert a.poll() == []
    assert waiters(a) == ["ex-b-2", "ex-a-2"]
    clock.advance(1)
    got = a.poll()
    assert [lease.holder for lease in got] == [holder("a-2")]
    assert holders(a) == ["ex-a-2"]
    # b comes back after its stall: its holders are missing, and asking again queues them
    assert b.missing([holder("b-1"), holder("b-2"), holder("a-2")]) == [
        holder("b-1"),
        holder("b-2"),
    ]
    assert b.request(holder("b-2"), {"p": 1}) is None
    assert waiters(a) == ["ex-b-2"]


def test_a_picked_up_grant_lives_its_full_ttl(make_manager: Make, clock: Clock) -> None:
    a = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="a")
    b = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="b")
    first = granted(a.request(holder("a-1"), {"p": 1}))
    assert b.request(holder("b-1"), {"p": 1}) is None
    a.release(first)
    clock.advance(3)
    (lease,) = b.poll()
    assert lease.expires_at == clock.now + 30
    clock.advance(25)  # past the pickup time, within the TTL
    assert b.renew(lease) is not None


def test_an_engine_that_stalled_queues_its_dropped_waiters_again(
    make_manager: Make, clock: Clock
) -> None:
    from types import SimpleNamespace
    from typing import Any

    from taskfabric.engine._pools import PoolGate

    a = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="a")
    b = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="b")
    first = granted(a.request(holder("a-1"), {"p": 1}))
    gate = PoolGate(b, execution_id="ex-b", project="p", domain="d", renew_seconds=0.0)
    node: Any = SimpleNamespace(full_id="n0")
    assert gate.acquire(node, 1, {"p": 1}) is False
    clock.advance(21)  # b stalled past its waiter TTL: a's next pass drops its waiter
    a.release(first)
    assert waiters(a) == [] and holders(a) == []
    # b's loop runs again: its poll finds the waiter gone and asks again, and is granted
    assert gate.poll(every=0.0) == [node]
    assert holders(a) == ["ex-b"]


def test_each_execution_of_an_engine_process_gets_its_own_grants(
    make_manager: Make, clock: Clock
) -> None:
    """One engine process (one manager, one owner) runs several executions, each with a gate
    of its own (a multi-tenant server's worker, issue 21). A grant that another process's
    pass made to one execution's waiter is that execution's to pick up: another execution's
    poll must leave it. (It took it and dropped it: the lease sat delivered and unused until
    its TTL ran out, and a pool shared by two servers granted one task per `lease_ttl`.)"""
    from types import SimpleNamespace
    from typing import Any

    from taskfabric.engine._pools import PoolGate

    other = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="other")
    worker = make_manager(PoolSpec("p", 1, lease_ttl=30), owner="worker")
    first = granted(other.request(holder("o-1"), {"p": 1}))
    gate_b = PoolGate(worker, execution_id="ex-b", project="p", domain="d", renew_seconds=10)
    gate_c = PoolGate(worker, execution_id="ex-c", project="p", domain="d", renew_seconds=10)
    node_b: Any = SimpleNamespace(full_id="n0")
    node_c: Any = SimpleNamespace(full_id="n0")
    assert gate_b.acquire(node_b, 1, {"p": 1}) is False
    assert gate_c.acquire(node_c, 1, {"p": 1}) is False
    other.release(first)  # the other process's pass grants the slot to ex-b, first in line
    assert holders(other) == ["ex-b"] and waiters(other) == ["ex-c"]
    assert gate_c.poll(every=0.0) == []  # ex-c's loop polls first: nothing for ex-c
    assert gate_b.poll(every=0.0) == [node_b]
    assert set(gate_b.held) == {("ex-b", "n0", 1)}
    gate_b.release(node_b, 1)  # and ex-c's turn comes the same way
    assert gate_c.poll(every=0.0) == [node_c]
