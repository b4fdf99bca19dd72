"""Data before records: every document a transaction names is on disk when it commits.

The loop defers its own documents (a node's inputs, an execution's outputs) and writes a turn's
in one append (`Documents.flush`) before the commit that names them; a backend writes an
attempt's outputs before it reports success. This test checks the order itself, not its
outcome: at each `MetadataStore.apply` and `create_execution`, every URI of a record (an
execution's inputs, workflow and outputs, a node's inputs and, once it succeeded, its outputs,
a cache entry's) must already be readable from the
file system, byte range included for packed records. A flush moved after a commit, or one
forgotten on a new path, fails here; the durability tests would only catch it by a kill at
the wrong instant."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

from taskfabric import map_task, task, workflow
from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata import Batch


@task
def inc(x: int) -> int:
    return x + 1


@task(cache=True)
def cached_inc(x: int) -> int:
    return x + 1


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def big(x: int) -> str:
    return "x" * (x * 1000)  # larger than a packed record's share of one write


@workflow
def chain(x: int) -> int:
    for _ in range(5):
        x = inc(x=x)
    return x


@workflow
def cached_chain(x: int) -> int:
    for _ in range(5):
        x = cached_inc(x=x)
    return x


@workflow
def fan_out(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))


@workflow
def inner(x: int) -> int:
    return inc(x=inc(x=x))


@workflow
def nested(x: int) -> str:
    return big(x=inner(x=x))


def _on_disk(uri: str) -> str | None:
    """Why `uri` cannot be read from the file system yet (None: it can)."""
    location, _, packed = uri.partition("#")
    parsed = urlparse(location)
    assert parsed.scheme == "file", uri
    path = Path(unquote(parsed.path))
    if not path.exists():
        return f"{uri}: no {path}"
    if packed:
        offset, _, length = packed.partition("+")
        end = int(offset) + int(length)
        size = os.path.getsize(path)
        if size < end:
            return f"{uri}: the segment has {size} bytes, the record ends at {end}"
    return None


def _uris(batch: Batch) -> Iterator[tuple[str, str]]:
    for execution_id, values in batch.executions.items():
        for key in ("inputs_uri", "outputs_uri", "workflow_uri"):
            if values.get(key):
                yield f"execution {execution_id} {key}", values[key]
    for node in batch.nodes.values():
        if node.inputs_uri:
            yield f"node {node.node_id} ({node.phase}) inputs", node.inputs_uri
        if node.outputs_uri and node.phase == "SUCCEEDED":
            yield f"node {node.node_id} outputs", node.outputs_uri
    for entry in batch.cache_entries:
        yield f"cache entry {entry.key}", entry.outputs_uri


@pytest.fixture
def checked(tmp_path: Path) -> Iterator[tuple[Engine, list[str], list[int]]]:
    """An engine whose every commit checks its URIs; yields it, the problems found and a
    count of the URIs checked (so that a run that checks nothing fails)."""
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(heartbeat_seconds=3600, commit_seconds=3600),
    )
    problems: list[str] = []
    checked = [0]
    with Engine(config) as engine:
        store = engine.metadata
        apply, create = store.apply, store.create_execution

        def check(what: str, uri: str) -> None:
            checked[0] += 1
            why = _on_disk(uri)
            if why is not None:
                problems.append(f"{what}: {why}")

        def checking_apply(batch: Batch) -> Any:
            for what, uri in _uris(batch):
                check(what, uri)
            return apply(batch)

        def checking_create(rec: Any) -> Any:
            for key in ("inputs_uri", "workflow_uri"):
                if getattr(rec, key):
                    check(f"new execution {rec.id} {key}", getattr(rec, key))
            return create(rec)

        store.apply = checking_apply  # type: ignore[method-assign]
        store.create_execution = checking_create  # type: ignore[method-assign]
        yield engine, problems, checked


@pytest.mark.parametrize(
    ("wf", "inputs", "least"),
    [
        (chain, {"x": 1}, 11),  # each node's inputs and outputs, the execution's
        (fan_out, {"n": 200}, 400),  # each item's inputs and outputs
        (nested, {"x": 3}, 8),  # a subworkflow's nodes, an outputs record of 3 KB
    ],
)
def test_every_uri_a_commit_names_is_on_disk(
    checked: tuple[Engine, list[str], list[int]], wf: Any, inputs: dict[str, int], least: int
) -> None:
    engine, problems, count = checked
    result = engine.launch(wf, inputs)
    assert result.succeeded, result.error
    assert problems == []
    assert count[0] >= least


def test_cache_hits_name_only_documents_on_disk(
    checked: tuple[Engine, list[str], list[int]],
) -> None:
    engine, problems, count = checked
    first = engine.launch(cached_chain, {"x": 1})
    before = count[0]
    second = engine.launch(cached_chain, {"x": 1})
    assert first.succeeded and second.succeeded
    assert second.outputs == first.outputs
    assert problems == []
    assert count[0] - before >= 6  # the hits' outputs and the execution's


def test_the_check_sees_a_record_not_written_yet(tmp_path: Path) -> None:
    """The check itself: a packed URI past the segment's end, or a missing file, is reported."""
    segment = tmp_path / "packs" / "a.pack"
    segment.parent.mkdir()
    segment.write_bytes(b"x" * 10)
    assert _on_disk(f"{segment.as_uri()}#0+10") is None
    assert "ends at 11" in (_on_disk(f"{segment.as_uri()}#2+9") or "")
    assert "no " in (_on_disk((tmp_path / "gone.pb").as_uri()) or "")
