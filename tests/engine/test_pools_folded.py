"""SQLite: a pooled attempt's grant goes in the commit that records its start, its release in
the one that records its end (engine/_pools.py), not in transactions of their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, PoolConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata._lite import LiteStore
from taskfabric.pools import PoolManager


@task(pools={"api": 1})
def step(x: int) -> int:
    return x + 1


@workflow
def chain(x: int) -> int:
    for _ in range(5):
        x = step(x=x)
    return x


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@workflow
def fan(n: int) -> list[int]:
    return map_task(step)(x=upto(n=n))


def _engine(tmp_path: Path, slots: int = 1) -> Engine:
    return Engine(
        Config(storage=StorageConfig(data_root=tmp_path), pools={"api": PoolConfig(slots=slots)})
    )


def _count_ordinary(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the manager's calls that run transactions of their own."""
    calls = {"request": 0, "release": 0}
    request, release_many = PoolManager.request, PoolManager.release_many

    def counted_request(self: PoolManager, *args: Any, **kwargs: Any) -> Any:
        calls["request"] += 1
        return request(self, *args, **kwargs)

    def counted_release(self: PoolManager, leases: Any, **kwargs: Any) -> Any:
        calls["release"] += len(leases)
        return release_many(self, leases, **kwargs)

    monkeypatch.setattr(PoolManager, "request", counted_request)
    monkeypatch.setattr(PoolManager, "release_many", counted_release)
    return calls


def test_a_chain_on_a_one_slot_pool_takes_no_transaction_of_its_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_ordinary(monkeypatch)
    with _engine(tmp_path) as engine:
        result = engine.launch(chain, {"x": 0})
        assert result.phase == "SUCCEEDED", result.error
        assert result.outputs.literals["o0"].integer == 5
        # each step's grant found the slot its predecessor released in the same commit
        assert calls["request"] == 0
        # only the last release, at the execution's end, has a transaction of its own
        assert calls["release"] == 1
        events = engine.metadata.events(result.execution_id)
        assert not [e for e in events if e.message.startswith("waiting for pool")]
        assert engine.pool_manager.status()[0].in_use == 0


def test_contended_slots_are_handed_on_by_the_ordinary_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_ordinary(monkeypatch)
    with _engine(tmp_path) as engine:
        result = engine.launch(fan, {"n": 4})
        assert result.phase == "SUCCEEDED", result.error
        items = result.outputs.literals["o0"].list.literals
        assert [item.integer for item in items] == [1, 2, 3, 4]
        assert calls["request"] >= 1  # the items that found the slot taken queued
        assert engine.pool_manager.status()[0].in_use == 0
        assert engine.pool_manager.status()[0].waiters == ()


def test_a_commit_that_fails_takes_the_grant_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    apply = LiteStore.apply
    failed: list[bool] = []

    def failing_once(self: LiteStore, batch: Any, into: Any = None) -> None:
        apply(self, batch, into)  # the grant and the start are written, then it fails
        if into is not None and not failed:
            failed.append(True)
            raise RuntimeError("disk full")

    monkeypatch.setattr(LiteStore, "apply", failing_once)
    with _engine(tmp_path) as engine:
        with pytest.raises(RuntimeError, match="disk full"):
            engine.launch(chain, {"x": 0})
        assert failed
        manager = engine.pool_manager
        assert manager.status()[0].in_use == 0
        assert manager.leases() == []
        # the store's write lock was given back: the next run takes the pool and commits
        monkeypatch.setattr(LiteStore, "apply", apply)
        result = engine.launch(chain, {"x": 0})
        assert result.phase == "SUCCEEDED", result.error
        assert manager.status()[0].in_use == 0
