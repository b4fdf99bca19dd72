"""A grant and a release in a caller's write transaction (SQLite: the engine's commits)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pool_helpers import Clock, holder

from taskfabric.metadata import Batch, MetadataStore
from taskfabric.pools import PoolError, PoolManager, PoolSpec


@pytest.fixture
def store_and_manager(tmp_db: str, clock: Clock) -> Iterator[tuple[MetadataStore, PoolManager]]:
    store = MetadataStore(tmp_db, migrate=False)
    manager = PoolManager(store.engine, {"one": PoolSpec("one", 1)}, owner="a", clock=clock)
    yield store, manager
    manager.close()
    store.close()


def _in_use(manager: PoolManager) -> int:
    return manager.status(["one"])[0].in_use


def test_a_grant_is_written_by_the_commit_it_goes_with(
    store_and_manager: tuple[MetadataStore, PoolManager],
) -> None:
    store, manager = store_and_manager
    manager.sync()
    lease = manager.grant_in(store.open_write().cursor(), holder("n1"), {"one": 1})
    assert lease is not None
    assert store.write_open()
    assert _in_use(manager) == 0  # not committed yet: other connections do not see it
    batch = Batch()
    batch.update_execution("none", heartbeat_at=1.0)
    store.apply(batch)
    assert not store.write_open()  # the batch's apply committed it, with the grant
    assert _in_use(manager) == 1
    # full: the pool does not grant it in a transaction either, nor write anything
    assert manager.grant_in(store.open_write().cursor(), holder("n2"), {"one": 1}) is None
    store.close_write()
    assert manager.leases() == [lease]


def test_a_rolled_back_grant_leaves_nothing(
    store_and_manager: tuple[MetadataStore, PoolManager],
) -> None:
    store, manager = store_and_manager
    manager.sync()
    assert manager.grant_in(store.open_write().cursor(), holder("n1"), {"one": 1}) is not None
    store.close_write(commit=False)
    assert _in_use(manager) == 0
    assert manager.request(holder("n2"), {"one": 1}) is not None  # the slot was free


def test_with_somebody_waiting_both_leave_it_to_the_ordinary_path(
    store_and_manager: tuple[MetadataStore, PoolManager],
) -> None:
    store, manager = store_and_manager
    first = manager.request(holder("n1"), {"one": 1})
    assert first is not None
    assert manager.request(holder("n2"), {"one": 1}) is None  # queued
    cur = store.open_write().cursor()
    assert manager.grant_in(cur, holder("n3"), {"one": 1}) is None  # not ahead of n2
    assert not manager.release_in(cur, [first])  # the pass must hand the slot on
    store.close_write()
    assert manager.leases() == [first]  # nothing was released
    manager.release(first)
    (handed,) = manager.poll()
    assert handed.holder.execution_id == "ex-n2"


def test_a_release_nobody_waits_behind_goes_with_the_commit(
    store_and_manager: tuple[MetadataStore, PoolManager],
) -> None:
    store, manager = store_and_manager
    lease = manager.request(holder("n1"), {"one": 1})
    assert lease is not None
    assert manager.release_in(store.open_write().cursor(), [lease])
    assert _in_use(manager) == 1
    store.close_write()
    assert _in_use(manager) == 0
    # stale now: a no-op, as `release` is
    assert manager.release_in(store.open_write().cursor(), [lease])
    store.close_write()
    assert _in_use(manager) == 0


def test_a_request_that_can_never_be_granted_raises(
    store_and_manager: tuple[MetadataStore, PoolManager],
) -> None:
    store, manager = store_and_manager
    with pytest.raises(PoolError, match="at most 1"):
        manager.grant_in(store.open_write().cursor(), holder("n1"), {"one": 2})
    store.close_write(commit=False)
