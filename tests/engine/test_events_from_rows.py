"""A task node's plain transitions (its first QUEUED, each attempt's RUNNING, its SUCCEEDED)
are its node and attempt rows alone: no event row is written for them, and
`MetadataStore.events` reads them back from those rows (metadata/_events.py). Every
transition the engine reports as it happens (`on_event`, what progress output and plugin
hooks hear) must come back from `events`, in the same order, with the same attempt and
message: in a chain, through retries, a failure that skips what had not started, waits for
a pool, cache hits, a map, and a resume that runs a failed node again."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from taskfabric import Retry, map_task, task, workflow
from taskfabric.config import Config, EngineConfig, PoolConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.plugin_api import NodeEvent

FLAKY: dict[str, int] = {}


@task
def inc(x: int) -> int:
    return x + 1


@task(retries=Retry(retries=2, backoff=0.0))
def flaky(x: int) -> int:
    FLAKY["calls"] = FLAKY.get("calls", 0) + 1
    if FLAKY["calls"] < 3:
        raise ConnectionError(f"try {FLAKY['calls']} fails")
    return x


@task
def fails_until_fixed(x: int) -> int:
    if not FLAKY.get("fixed"):
        raise ValueError("not fixed yet")
    return x


@task(pools={"api": 1})
def pooled(x: int) -> int:
    return x


@task(cache=True)
def cached(x: int) -> int:
    return x * 2


@task
def upto(n: int) -> list[int]:
    return list(range(n))


@workflow
def chain(x: int) -> int:
    return inc(x=inc(x=inc(x=x)))


@workflow
def retried(x: int) -> int:
    return inc(x=flaky(x=x))


@task
def add(a: int, b: int) -> int:
    return a + b


@workflow
def failing(x: int) -> int:
    # with one slot, the inc waits while `fails_until_fixed` runs, and is skipped
    return add(a=fails_until_fixed(x=x), b=inc(x=x))


@workflow
def pair(x: int) -> int:
    # one slot in pool api: the second waits for the first's
    return add(a=pooled(x=x), b=pooled(x=x))


@workflow
def parallel(x: int) -> list[int]:
    return map_task(pooled)(x=upto(n=x))


@workflow
def twice_cached(x: int) -> int:
    return inc(x=cached(x=x))


@workflow
def mapped(n: int) -> list[int]:
    return map_task(inc)(x=upto(n=n))


def _engine(root: Path, parallelism: int = 8) -> Engine:
    return Engine(
        Config(
            storage=StorageConfig(data_root=root),
            pools={"api": PoolConfig(slots=1)},
            engine=EngineConfig(parallelism=parallelism),
        )
    )


def _reported(events: list[NodeEvent]) -> list[tuple[str, str, int, str]]:
    """What the events table held when every transition had its row (a map item's start
    and success were never events)."""
    return [
        (e.node_id, e.phase, e.attempt, e.message)
        for e in events
        if not (e.kind == "map_item" and e.phase in ("RUNNING", "SUCCEEDED") and not e.message)
    ]


def _read(engine: Engine, execution_id: str) -> list[tuple[str, str, int, str]]:
    return [
        (e.node_id, e.phase, e.attempt, e.message)
        for e in engine.metadata.events(execution_id)
        if e.node_id
    ]


def _event_rows(engine: Engine, execution_id: str) -> list[tuple[str, str]]:
    with sqlite3.connect(engine.metadata.url.removeprefix("sqlite:///")) as db:
        return db.execute(
            "SELECT node_id, phase FROM events WHERE execution_id = ? AND node_id != '' "
            "ORDER BY id",
            (execution_id,),
        ).fetchall()


@pytest.mark.parametrize(
    ("wf", "inputs", "parallelism"),
    [
        (chain, {"x": 1}, 8),
        (retried, {"x": 1}, 8),
        (failing, {"x": 1}, 1),
        (pair, {"x": 4}, 8),
        (parallel, {"x": 4}, 8),
        (mapped, {"n": 5}, 8),
        (twice_cached, {"x": 3}, 8),
    ],
    ids=["chain", "retries", "failure", "pool-waits", "map-pool-waits", "map", "cache"],
)
def test_events_read_back_what_the_engine_reported(
    tmp_path: Path, wf: Any, inputs: dict[str, int], parallelism: int
) -> None:
    FLAKY.clear()
    with _engine(tmp_path, parallelism) as engine:
        for _ in range(2):  # the second run of `twice_cached` is a cache hit
            seen: list[NodeEvent] = []
            result = engine.launch(wf, inputs, on_event=seen.append)
            assert _read(engine, result.execution_id) == _reported(seen)
            assert [e.at for e in engine.metadata.events(result.execution_id)] == sorted(
                e.at for e in engine.metadata.events(result.execution_id)
            )


def test_a_chain_writes_no_event_row_and_a_wait_or_failure_does(tmp_path: Path) -> None:
    FLAKY.clear()
    with _engine(tmp_path, 1) as engine:
        plain = engine.launch(chain, {"x": 1})
        assert plain.succeeded and _event_rows(engine, plain.execution_id) == []
        failed = engine.launch(failing, {"x": 1})
        assert not failed.succeeded
        rows = _event_rows(engine, failed.execution_id)
        assert ("n0", "FAILED") in rows  # what it says is its event
        assert ("n0", "QUEUED") not in rows and ("n0", "RUNNING") not in rows
    with _engine(tmp_path / "8", 8) as engine:
        waited = engine.launch(pair, {"x": 3})
        assert waited.succeeded
        # the node that waited for the pool: its QUEUED and its wait are events
        rows = _event_rows(engine, waited.execution_id)
        assert rows.count(("n1", "QUEUED")) == 2 and ("n1", "RUNNING") not in rows


def test_a_resumed_node_gives_the_events_of_both_runs(tmp_path: Path) -> None:
    FLAKY.clear()
    with _engine(tmp_path, 1) as engine:
        first: list[NodeEvent] = []
        failed = engine.launch(failing, {"x": 1}, on_event=first.append)
        assert not failed.succeeded
        queued_at = {n.node_id: n.started_at for n in engine.metadata.nodes(failed.execution_id)}
        FLAKY["fixed"] = 1
        again: list[NodeEvent] = []
        result = engine.resume(failed.execution_id, workflow=failing, on_event=again.append)
        assert result.succeeded
        read, reported = _read(engine, failed.execution_id), _reported(first) + _reported(again)
        # each node's events in order (a rerun node's first QUEUED is given at its first
        # attempt's start: metadata/_events.py), and all of them
        for node_id in {e[0] for e in reported}:
            assert [e for e in read if e[0] == node_id] == [e for e in reported if e[0] == node_id]
        assert sorted(read) == sorted(reported)
        # its start is the run's that ran it (a duration does not count the time between)
        nodes = {n.node_id: n for n in engine.metadata.nodes(failed.execution_id)}
        assert nodes["n0"].attempts == 2
        assert (nodes["n0"].started_at or 0) > (queued_at["n0"] or 0)
