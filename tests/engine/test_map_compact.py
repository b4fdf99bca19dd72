"""A map keeps its items compactly: an item's in-memory state exists only while it is about
to start or runs, its rows are written in bulk, and what users see (one row per item, its
phase and attempts; a failure that skips the items not started; a resume that runs only the
items not done) stays as it was. Counts and phases, never timings (speed is bench/bench_map.py)."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, EngineConfig, MetadataConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.engine._state import NodeState, PriorItems
from taskfabric.metadata import NodeRecord

N = 1_000
#: item values whose task fails (not retried), and every value the task ran with
FAILING: set[int] = set()
RAN: list[int] = []
#: the most NodeStates alive at once, seen from inside the items' task
SEEN: dict[str, int] = {"node_states": 0}
_lock = threading.Lock()


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def square(x: int) -> int:
    with _lock:
        RAN.append(x)
        if x % 250 == 0:  # now and then, count what the engine holds
            alive = sum(1 for o in gc.get_objects() if isinstance(o, NodeState))
            SEEN["node_states"] = max(SEEN["node_states"], alive)
    if x in FAILING:
        raise ValueError(f"item {x} fails")
    return x * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def squares(n: int) -> int:
    return total(xs=map_task(square)(x=numbers(n=n)))


def _engine(root: Path, parallelism: int, metadata_url: str = "") -> Engine:
    return Engine(
        Config(
            storage=StorageConfig(data_root=root),
            engine=EngineConfig(parallelism=parallelism),
            metadata=MetadataConfig(url=metadata_url or None),
        )
    )


def _items(engine: Engine, execution_id: str) -> dict[int, str]:
    return {
        int(n.node_id.rsplit("[", 1)[1][:-1]): n.phase
        for n in engine.metadata.nodes(execution_id)
        if n.kind == "map_item"
    }


def map_node_id(nodes: list[NodeRecord]) -> str:
    return next(n.node_id for n in nodes if n.kind == "map")


def _reset() -> None:
    FAILING.clear()
    RAN.clear()
    SEEN["node_states"] = 0


def test_a_large_map_runs_every_item_once_holding_few_of_them(tmp_path: Path) -> None:
    _reset()
    with _engine(tmp_path, parallelism=4) as engine:
        result = engine.launch(squares, {"n": N})
        assert result.phase == "SUCCEEDED"
        out = result.outputs
        assert out is not None and out.literals["o0"].integer == sum(i * i for i in range(N))
        nodes = engine.metadata.nodes(result.execution_id)
        items = [n for n in nodes if n.kind == "map_item"]
        assert len(items) == N
        assert all(n.phase == "SUCCEEDED" and n.attempts == 1 and n.outputs_uri for n in items)
        assert {n.name for n in items} == {f"{items[0].name.split('[')[0]}[{i}]" for i in range(N)}
        assert len(engine.metadata.attempts(result.execution_id)) == N + 2
        # an item's start and success are its row, not events (the map has one, "N items")
        events = engine.metadata.events(result.execution_id)
        assert not [e for e in events if "[" in e.node_id]
        assert f"{N} items" in [e.message for e in events if e.node_id == map_node_id(nodes)]
        # the map's list is in item order
        map_node = next(n for n in nodes if n.kind == "map")
        listed = engine.read_literals(map_node.outputs_uri)
        assert listed is not None
        assert [x.integer for x in listed.literals["o0"].list.literals] == [i * i for i in range(N)]
    assert sorted(RAN) == list(range(N))
    # Items are made as room frees up (4 x parallelism waiting, at least 256), not all at
    # once: far fewer than N node states ever lived together.
    assert 0 < SEEN["node_states"] < 400


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_failed_item_skips_the_items_not_started_and_resume_runs_only_those_not_done(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    # (the bulk writes are SQL of each dialect's own: INSERT ... ON CONFLICT ... WHERE)
    url = request.getfixturevalue("postgres_url") if database == "postgres" else ""
    _reset()
    FAILING.add(400)
    with _engine(tmp_path, parallelism=2, metadata_url=url) as engine:
        result = engine.launch(squares, {"n": N})
        assert result.phase == "FAILED"
        assert result.error and "item 400" in result.error["message"]
        first = _items(engine, result.execution_id)
        assert len(first) == N and first[400] == "FAILED"
        # a failed item is an event, as any failed node
        failed = [
            e for e in engine.metadata.events(result.execution_id) if e.node_id.endswith("[400]")
        ]
        assert [e.phase for e in failed] == ["FAILED"] and "item 400 fails" in failed[0].message
        phases = set(first.values())
        # nothing is left queued: the items never started were skipped, in bulk
        assert phases <= {"SUCCEEDED", "FAILED", "SKIPPED", "ABORTED"}
        assert "SKIPPED" in phases
        done = {i for i, p in first.items() if p == "SUCCEEDED"}
        assert sorted(RAN) == sorted(done | {400})

        FAILING.clear()
        RAN.clear()
        again = engine.resume(result.execution_id, workflow=squares)
        assert again.phase == "SUCCEEDED"
        out = again.outputs
        assert out is not None and out.literals["o0"].integer == sum(i * i for i in range(N))
        # the items that had succeeded were not run again; every other one ran once
        assert sorted(RAN) == sorted(set(range(N)) - done)
        after = _items(engine, result.execution_id)
        assert set(after.values()) == {"SUCCEEDED"}
        item_400 = next(
            n
            for n in engine.metadata.nodes(result.execution_id)
            if n.kind == "map_item" and n.node_id.endswith("[400]")
        )
        assert item_400.attempts == 2  # its attempt numbers go on


@task(cache=True)
def cached_square(x: int) -> int:
    with _lock:
        RAN.append(x)
    return x * x


@workflow
def cached_squares(n: int) -> int:
    return total(xs=map_task(cached_square)(x=numbers(n=n)))


def test_items_are_cached_one_by_one(tmp_path: Path) -> None:
    _reset()
    with _engine(tmp_path, parallelism=4) as engine:
        first = engine.launch(cached_squares, {"n": 300})
        assert first.phase == "SUCCEEDED" and sorted(RAN) == list(range(300))
        RAN.clear()
        second = engine.launch(cached_squares, {"n": 310})  # 300 hits, 10 new items
        assert second.phase == "SUCCEEDED"
        assert second.outputs is not None
        assert second.outputs.literals["o0"].integer == sum(i * i for i in range(310))
        assert sorted(RAN) == list(range(300, 310))
        items = [n for n in engine.metadata.nodes(second.execution_id) if n.kind == "map_item"]
        status = {int(n.node_id.rsplit("[", 1)[1][:-1]): n.cache_status for n in items}
        assert len(status) == 310 and all(n.phase == "SUCCEEDED" for n in items)
        assert {status[i] for i in range(300)} == {"hit"}
        assert {status[i] for i in range(300, 310)} == {"written"}


def test_a_resume_keeps_each_recorded_item_as_its_attempts_and_outputs_uri() -> None:
    pack = "file:///data/executions/e/packs/host-1-abc.pack"
    prior = PriorItems(
        [
            ("n1[5000]", "RUNNING", 1, ""),  # rows come in any order
            ("n1[0]", "SUCCEEDED", 1, f"{pack}#0+12"),
            ("n1[7]", "SUCCEEDED", 2, f"{pack}#12+9"),
            ("n1[3]", "FAILED", 2, f"{pack}#40+9"),  # an outputs URI of a failed attempt
            ("n2/n0[1]", "SUCCEEDED", 1, "s3://bucket/e/nodes/n2/n0/1/outputs.pb"),
            ("n2/n0[2]", "SUCCEEDED", 0, ""),  # a succeeded row without outputs
        ]
    )
    assert prior.get("n1", 0) == (1, f"{pack}#0+12")
    assert prior.get("n1", 7) == (2, f"{pack}#12+9")
    assert prior.get("n1", 3) == (2, "")  # runs again, its attempt numbers going on
    assert prior.get("n2/n0", 1) == (1, "s3://bucket/e/nodes/n2/n0/1/outputs.pb")
    assert prior.get("n2/n0", 2) == (0, "")
    assert prior.get("n1", 5000) == (1, "")
    assert prior.get("n1", 1) is None and prior.get("n1", 4999) is None
    assert prior.get("n1", 9000) is None and prior.get("n9", 0) is None
    assert prior.succeeded == 3 and prior
    assert not PriorItems()
