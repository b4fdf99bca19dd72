"""What a cache hit does once per process or per turn instead of once per hit: its key
(kept by its task and its inputs' encoding) and the read of its outputs (a read-ahead of
the segment that computed them)."""

from __future__ import annotations

import os
from typing import Any

import pytest

from taskfabric import Cache, task, workflow
from taskfabric.catalog import Catalog
from taskfabric.config import load_config
from taskfabric.engine import Engine, _caching


@pytest.fixture
def engine() -> Any:
    with Engine(load_config()) as eng:
        yield eng


@task(cache=True)
def step(x: int) -> int:
    return x + 1


@task(cache=Cache(version="1", ignored_inputs=["note"]))
def noted(x: int, note: str) -> int:
    return x * 2


@workflow
def chain(x: int) -> int:
    for _ in range(20):
        x = step(x=x)
    return x


@workflow
def two(x: int, note: str) -> int:
    return noted(x=step(x=x), note=note)


def statuses(engine: Engine, execution_id: str) -> list[str]:
    return [n.cache_status for n in engine.metadata.nodes(execution_id)]


def test_a_process_hashes_the_same_inputs_of_a_task_once(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The second run's hits take their keys from the first run's (`_caching._KEYS`): no
    inputs are hashed again; other inputs, or another task, are."""
    first = engine.launch(chain, {"x": 100})
    assert set(statuses(engine, first.execution_id)) == {"written"}
    hashed: list[int] = []
    real = _caching.inputs_hash

    def counted(*args: Any) -> str:
        hashed.append(1)
        return real(*args)

    monkeypatch.setattr(_caching, "inputs_hash", counted)
    second = engine.launch(chain, {"x": 100})
    assert second.succeeded and set(statuses(engine, second.execution_id)) == {"hit"}
    assert hashed == []
    # (the 20 nodes' keys are those the entries were written under, as `cache_key` makes)
    keys = {e.key for e in Catalog(engine.metadata).list(task="step", limit=1000)}
    third = engine.launch(chain, {"x": 200})
    assert set(statuses(engine, third.execution_id)) == {"written"} and hashed
    assert (
        len({e.key for e in Catalog(engine.metadata).list(task="step", limit=1000)})
        == len(keys) + 20
    )


def test_a_kept_key_is_the_tasks_and_leaves_out_its_ignored_inputs(engine: Engine) -> None:
    """Inputs that differ only in an ignored input hit, though their encodings (which
    `_KEYS` keeps keys by) differ: the key leaves the ignored input out."""
    _caching._KEYS.clear()
    first = engine.launch(two, {"x": 3, "note": "a"})
    assert statuses(engine, first.execution_id) == ["written", "written"]
    second = engine.launch(two, {"x": 3, "note": "b"})
    assert statuses(engine, second.execution_id) == ["hit", "hit"]
    assert second.outputs is not None and first.outputs is not None
    assert second.outputs.literals["o0"].integer == 8


def test_a_chains_hits_read_their_outputs_in_a_few_reads(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hits of a turn read their entries' outputs through one read-ahead: the chain's
    20 outputs, one after another in the first run's segment, in one or two `pread(2)`."""
    engine.launch(chain, {"x": 300})
    reads: list[int] = []
    pread = os.pread

    def counted(fd: int, size: int, offset: int) -> bytes:
        reads.append(size)
        return pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", counted)
    second = engine.launch(chain, {"x": 300})
    assert set(statuses(engine, second.execution_id)) == {"hit"}
    assert 1 <= len(reads) <= 2
