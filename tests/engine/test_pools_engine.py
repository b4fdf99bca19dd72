"""The engine runs an attempt only while it holds its resource pools."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskfabric import Retry, TaskfabricError, map_task, task, workflow
from taskfabric.config import Config, PoolConfig, StorageConfig
from taskfabric.engine import Engine

LOCK = threading.Lock()
STATE = {"now": 0, "max": 0}


@task(pools={"api": 1})
def call_api(x: int) -> int:
    with LOCK:
        STATE["now"] += 1
        STATE["max"] = max(STATE["max"], STATE["now"])
    time.sleep(0.05)
    with LOCK:
        STATE["now"] -= 1
    return x


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@workflow
def calls(n: int) -> list[int]:
    return map_task(call_api)(x=upto(n=n))


def _engine(tmp_path: Path, **pools: PoolConfig) -> Engine:
    return Engine(
        Config(storage=StorageConfig(data_root=tmp_path), pools=pools, engine={"parallelism": 8})
    )  # type: ignore[arg-type]


def test_a_pool_bounds_concurrency_and_waiting_nodes_say_where(tmp_path: Path) -> None:
    STATE.update(now=0, max=0)
    with _engine(tmp_path, api=PoolConfig(slots=2)) as engine:
        result = engine.launch(calls, {"n": 12})
        assert result.phase == "SUCCEEDED", result.error
        assert STATE["max"] == 2
        events = engine.metadata.events(result.execution_id)
        waits = [e.message for e in events if e.message.startswith("waiting for pool api")]
        assert waits and "(position " in waits[0]
        status = engine.pool_manager.status()
        assert status[0].in_use == 0  # every lease came back


def test_retry_backoff_holds_no_slot(tmp_path: Path) -> None:
    marker = tmp_path / "failed-once"
    seen: list[str] = []

    @task(pools={"api": 1}, retries=Retry(retries=1, backoff=0.5))
    def flaky(x: int) -> int:
        if not marker.exists():
            marker.touch()
            seen.append("flaky failed")
            raise ConnectionError("first try fails")
        seen.append("flaky ok")
        return x

    @task(pools={"api": 1})
    def quick(x: int) -> int:
        time.sleep(0.1)  # starts after flaky failed, while it waits to retry
        seen.append("quick")
        return x

    @task
    def both(a: int, b: int) -> int:
        return a + b

    @workflow
    def wf() -> int:
        return both(a=flaky(x=1), b=quick(x=2))

    with _engine(tmp_path, api=PoolConfig(slots=1)) as engine:
        result = engine.launch(wf, {})
        assert result.phase == "SUCCEEDED", result.error
    # quick got the only slot during flaky's backoff, then flaky retried
    assert seen.index("quick") < seen.index("flaky ok")


def test_unknown_or_impossible_pools_are_refused_before_running(tmp_path: Path) -> None:
    @task(pools={"geo": 1})
    def geo(x: int) -> int:
        return x

    @task(pools={"api": 3})
    def heavy(x: int) -> int:
        return x

    @workflow
    def wf_geo(x: int) -> int:
        return geo(x=x)

    @workflow
    def wf_heavy(x: int) -> int:
        return heavy(x=x)

    with _engine(tmp_path) as engine, pytest.raises(TaskfabricError, match=r"\[pools.geo\]"):
        engine.launch(wf_geo, {"x": 1})
    with _engine(tmp_path / "2", api=PoolConfig(slots=2)) as engine:
        with pytest.raises(TaskfabricError, match="geo"):
            engine.launch(wf_geo, {"x": 1})
        with pytest.raises(TaskfabricError, match="api"):
            engine.launch(wf_heavy, {"x": 1})
        assert engine.metadata.list_executions() == []


def test_abort_releases_slots(tmp_path: Path) -> None:
    release = threading.Event()

    @task(pools={"api": 1})
    def blocked(x: int) -> int:
        release.wait(10)
        return x

    @workflow
    def wf(n: int) -> list[int]:
        return map_task(blocked)(x=upto(n=n))

    with _engine(tmp_path, api=PoolConfig(slots=1)) as engine:

        def cancel_soon() -> Any:
            time.sleep(0.5)
            rec = engine.metadata.list_executions()[0]
            engine.request_cancel(rec.id)
            time.sleep(1.5)
            release.set()

        threading.Thread(target=cancel_soon, daemon=True).start()
        result = engine.launch(wf, {"n": 3})
        assert result.phase == "ABORTED"
        status = engine.pool_manager.status()
        assert status[0].in_use == 0 and not status[0].waiters


def test_threads_asking_for_the_pool_manager_at_once_make_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of first launches on a server (or first executions in a worker) asks for the
    manager from many threads at once: one is made. Each manager keeps database connections
    checked out, and one per thread had emptied the API's connection pool (issue 21's drill:
    every request then waited 30 s for a connection)."""
    from taskfabric.engine._pooling import EnginePools

    engine = _engine(tmp_path, api=PoolConfig(slots=2))
    made: list[int] = []
    second = threading.Event()
    real = EnginePools._new_manager

    def new_manager(self: EnginePools, owner: str) -> Any:
        made.append(1)
        if len(made) > 1:
            second.set()
        else:  # the first waits a while for another thread to come in too
            second.wait(5)
        return real(self, owner)

    monkeypatch.setattr(EnginePools, "_new_manager", new_manager)
    found: list[Any] = []
    threads = [
        threading.Thread(target=lambda: found.append(engine.pools.manager)) for _ in range(8)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(made) == 1, f"{len(made)} managers made"
        assert len({id(m) for m in found}) == 1
    finally:
        engine.close()
