"""A map's items and `Backend.submit_map_items`: a backend that overrides it gets the items
that start together in one call (an array job's worth), then polls, fails and retries each
on its own; any other backend gets `submit` once per item, each failing alone."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from taskfabric import map_task, task, workflow
from taskfabric.backends import ThreadBackend
from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP, BackendSettings, TaskAttempt
from taskfabric.plugins import Plugins, use_plugins

#: What the test backends were handed: ("submit", [node id]) or ("map", [node ids]).
CALLS: list[tuple[str, list[str]]] = []
#: Items whose first attempt fails (the task's code raises), by value.
FAIL_ONCE: set[int] = set()
#: Items that always fail.
FAIL_ALWAYS: set[int] = set()
_lock = threading.Lock()


class _Settings(BackendSettings):
    workers: int | None = None


class OneByOne(ThreadBackend[_Settings]):
    """Takes items one by one (no `submit_map_items`); refuses to submit item 2."""

    driver = "one-by-one"
    settings_model = _Settings

    def submit(self, attempt: TaskAttempt) -> None:
        with _lock:
            CALLS.append(("submit", [attempt.node_id]))
        if attempt.node_id.endswith("[2]"):
            raise RuntimeError("the engine refused item 2")
        super().submit(attempt)


class Together(ThreadBackend[_Settings]):
    """Takes a map's items together; the first call fails when `refuse_first` is set."""

    driver = "together"
    settings_model = _Settings
    refuse_first = False

    def submit_map_items(self, attempts: Sequence[TaskAttempt]) -> None:
        with _lock:
            CALLS.append(("map", [a.node_id for a in attempts]))
            first = len(CALLS) == 1
        if first and type(self).refuse_first:
            raise RuntimeError("the array job was refused")
        for attempt in attempts:
            super().submit(attempt)

    def submit(self, attempt: TaskAttempt) -> None:
        with _lock:
            CALLS.append(("submit", [attempt.node_id]))
        super().submit(attempt)


@task(retries=1)
def square(i: int) -> int:
    with _lock:
        if i in FAIL_ONCE:
            FAIL_ONCE.discard(i)
            raise ValueError(f"item {i} failed once")
    if i in FAIL_ALWAYS:
        raise ValueError(f"item {i} always fails")
    return i * i


@task
def total(squares: list[int]) -> int:
    return sum(squares)


@workflow
def squares(numbers: list[int]) -> int:
    return total(squares=map_task(square)(i=numbers))


@pytest.fixture(autouse=True)
def _clean() -> Iterator[None]:
    CALLS.clear()
    FAIL_ONCE.clear()
    FAIL_ALWAYS.clear()
    Together.refuse_first = False
    yield


def _engine(tmp_path: Path, driver: str) -> Engine:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "one-by-one", OneByOne)
    plugins.add_driver(BACKENDS_GROUP, "together", Together)
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(parallelism=16),
        task_types={"python": "items"},
        backends={"items": {"driver": driver}},  # type: ignore[dict-item]
    )
    with use_plugins(plugins):
        return Engine(config, plugins=plugins)


def _item_calls() -> list[tuple[str, list[str]]]:
    return [(how, nodes) for how, nodes in CALLS if any("[" in n for n in nodes)]


def _phases(engine: Engine, execution_id: str) -> dict[tuple[str, int], tuple[str, Any]]:
    return {
        (a.node_id, a.attempt): (a.phase, (a.error or {}).get("code"))
        for a in engine.metadata.attempts(execution_id)
    }


def test_a_backend_that_takes_map_items_gets_them_in_one_call_and_each_ends_alone(
    tmp_path: Path,
) -> None:
    FAIL_ONCE.add(3)
    with _engine(tmp_path, "together") as engine:
        result = engine.launch(squares, {"numbers": list(range(6))})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(squares, engine.store, tmp_path) == 55
        phases = _phases(engine, result.execution_id)
    # The six items in one call; the one that failed, retried alone; the total on its own.
    items = [f"n0[{i}]" for i in range(6)]
    assert _item_calls() == [("map", items), ("map", ["n0[3]"])]
    assert ("submit", ["n1"]) in CALLS
    assert phases[("n0[3]", 1)] == ("FAILED", "ValueError")
    assert phases[("n0[3]", 2)] == ("SUCCEEDED", None)
    assert all(phases[(n, 1)] == ("SUCCEEDED", None) for n in items if n != "n0[3]")


def test_an_item_that_fails_for_good_fails_only_itself(tmp_path: Path) -> None:
    FAIL_ALWAYS.add(4)
    with _engine(tmp_path, "together") as engine:
        result = engine.launch(squares, {"numbers": list(range(6))})
        phases = _phases(engine, result.execution_id)
        nodes = {n.node_id: n.phase for n in engine.metadata.nodes(result.execution_id)}
    assert result.phase == "FAILED"
    assert phases[("n0[4]", 1)] == ("FAILED", "ValueError")
    assert phases[("n0[4]", 2)] == ("FAILED", "ValueError")
    assert nodes["n0[4]"] == "FAILED"
    assert all(nodes[f"n0[{i}]"] == "SUCCEEDED" for i in range(6) if i != 4), nodes
    assert _item_calls() == [("map", [f"n0[{i}]" for i in range(6)]), ("map", ["n0[4]"])]


def test_a_refused_call_fails_each_of_its_items_retryably(tmp_path: Path) -> None:
    Together.refuse_first = True
    with _engine(tmp_path, "together") as engine:
        result = engine.launch(squares, {"numbers": list(range(4))})
        assert result.phase == "SUCCEEDED", result.error
        phases = _phases(engine, result.execution_id)
    for i in range(4):
        assert phases[(f"n0[{i}]", 1)] == ("FAILED", "RuntimeError")
        assert phases[(f"n0[{i}]", 2)] == ("SUCCEEDED", None)
    calls = _item_calls()
    assert calls[0] == ("map", [f"n0[{i}]" for i in range(4)])
    # The retries came back as map items (together or not: their timers fire one by one).
    assert sorted(n for _, nodes in calls[1:] for n in nodes) == [f"n0[{i}]" for i in range(4)]
    assert {how for how, _ in calls} == {"map"}


def test_a_backend_without_it_gets_each_item_alone_and_a_refusal_fails_one_item(
    tmp_path: Path,
) -> None:
    with _engine(tmp_path, "one-by-one") as engine:
        result = engine.launch(squares, {"numbers": list(range(5))})
        phases = _phases(engine, result.execution_id)
        nodes = {n.node_id: n.phase for n in engine.metadata.nodes(result.execution_id)}
    assert result.phase == "FAILED"
    calls = _item_calls()
    assert {how for how, _ in calls} == {"submit"}
    assert sorted(n for _, (n,) in calls) == sorted(
        [f"n0[{i}]" for i in range(5)] + ["n0[2]"]  # item 2 twice: its retry
    )
    assert phases[("n0[2]", 1)] == ("FAILED", "RuntimeError")
    assert phases[("n0[2]", 2)] == ("FAILED", "RuntimeError")
    assert all(nodes[f"n0[{i}]"] == "SUCCEEDED" for i in range(5) if i != 2), nodes
