"""A pool sized from outside (``set_capacity``; a backend's ``BackendContext.set_pool_capacity``):
it grants at most its capacity, under its configured slots, as the capacity moves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from pool_helpers import Clock, holder

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, PoolConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.pools import Lease, PoolError, PoolManager, PoolSpec

Make = Callable[..., PoolManager]


def in_use(manager: PoolManager, pool: str) -> int:
    return next(s.in_use for s in manager.status([pool]))


def test_a_capacity_below_the_slots_bounds_the_grants_and_moves_both_ways(
    make_manager: Make, clock: Clock
) -> None:
    pm = make_manager(PoolSpec("cluster", 5))
    assert pm.capacity("cluster") == 5
    assert pm.set_capacity("cluster", 2) == 2
    leases = [pm.request(holder(str(i)), {"cluster": 1}) for i in range(4)]
    held = [lease for lease in leases if lease is not None]
    assert len(held) == 2 and leases[2] is None and leases[3] is None
    (status,) = pm.status(["cluster"])
    assert (status.in_use, status.capacity, status.spec.slots) == (2, 2, 5)
    assert [w.holder.execution_id for w in status.waiters] == ["ex-2", "ex-3"]

    # Shrunk to nothing: the held leases stay (renewable), freed slots go to nobody.
    pm.set_capacity("cluster", 0)
    assert all(renewed is not None for renewed in pm.renew_many(held))
    assert pm.release(held[0]) == [] and pm.poll() == []
    clock.advance(1)
    assert pm.poll() == [] and in_use(pm, "cluster") == 1

    # Grown: the next poll grants the waiters up to the new capacity, no further.
    pm.set_capacity("cluster", 2)
    granted = pm.poll()
    assert [lease.holder.execution_id for lease in granted] == ["ex-2"]
    assert in_use(pm, "cluster") == 2
    pm.set_capacity("cluster", 3)
    assert [lease.holder.execution_id for lease in pm.poll()] == ["ex-3"]
    assert in_use(pm, "cluster") == 3


def test_the_configured_slots_stay_the_ceiling_and_none_goes_back_to_them(
    make_manager: Make,
) -> None:
    pm = make_manager(PoolSpec("cluster", 3))
    assert pm.set_capacity("cluster", 99) == 3  # clipped
    assert pm.set_capacity("cluster", -4) == 0
    # A request above the capacity but within the slots waits; above the slots it fails.
    assert pm.request(holder("big"), {"cluster": 2}) is None
    with pytest.raises(PoolError, match="at most 3"):
        pm.request(holder("huge"), {"cluster": 4})
    assert pm.set_capacity("cluster", None) is None
    assert pm.capacity("cluster") == 3 and pm.status(["cluster"])[0].capacity is None
    (lease,) = pm.poll()
    assert lease.holder.execution_id == "ex-big"


def test_a_capacity_needs_a_known_pool_and_an_integer(make_manager: Make) -> None:
    pm = make_manager(PoolSpec("cluster", 3))
    with pytest.raises(PoolError, match="unknown pool 'other'"):
        pm.set_capacity("other", 1)
    with pytest.raises(PoolError, match="an integer of slots"):
        pm.set_capacity("cluster", 1.5)  # type: ignore[arg-type]
    with pytest.raises(PoolError, match="an integer of slots"):
        pm.set_capacity("cluster", True)


def test_the_fast_path_honours_the_capacity(make_manager: Make) -> None:
    """Nobody waits: a request is granted at once only within the capacity."""
    pm = make_manager(PoolSpec("cluster", 4))
    pm.set_capacity("cluster", 1)
    first: Lease | None = pm.request(holder("1"), {"cluster": 1})
    assert first is not None
    assert pm.request(holder("2"), {"cluster": 1}) is None


LOCK = threading.Lock()
STATE = {"now": 0, "max": 0}


@task(pools={"cluster": 1})
def on_the_cluster(x: int) -> int:
    with LOCK:
        STATE["now"] += 1
        STATE["max"] = max(STATE["max"], STATE["now"])
    time.sleep(0.02)
    with LOCK:
        STATE["now"] -= 1
    return x


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@workflow
def many(n: int) -> list[int]:
    return map_task(on_the_cluster)(x=upto(n=n))


def test_a_backend_sizes_a_pool_of_the_engine_through_its_context(tmp_path: Path) -> None:
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        pools={"cluster": PoolConfig(slots=4)},
        engine={"parallelism": 8},  # type: ignore[arg-type]
    )
    STATE.update(now=0, max=0)
    with Engine(config) as engine:
        context = engine.backends._context
        context.set_pool_capacity("cluster", 1)
        result = engine.launch(many, {"n": 6})
        assert result.phase == "SUCCEEDED", result.error
        assert STATE["max"] == 1  # never two at once, though the pool has 4 slots
        # The hold service's manager, made after the call, has the capacity too.
        assert engine.pools.holds is not None
        assert engine.pool_manager.capacity("cluster") == 1
        assert engine.pools.holds.manager.capacity("cluster") == 1
        context.set_pool_capacity("cluster", None)
        assert engine.pool_manager.capacity("cluster") == 4
        assert engine.pools.holds.manager.capacity("cluster") == 4
        with pytest.raises(LookupError, match=r"declare \[pools.other\]"):
            context.set_pool_capacity("other", 2)
