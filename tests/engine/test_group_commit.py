"""Group commits: the transitions of many loop turns go to the database in one transaction,
and every transaction leaves the execution as it was at one moment (never a node's start
without its upstream node's end). Counted, not timed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskfabric import task, workflow
from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata import Batch

CHAIN = 20


@task
def inc(x: int) -> int:
    return x + 1


@workflow
def chain(x: int) -> int:
    for _ in range(CHAIN):
        x = inc(x=x)
    return x


def _run(root: Path, commit_seconds: float) -> tuple[list[Batch], str]:
    # heartbeats (which commit at once) far apart, so only the commit window decides
    config = Config(
        storage=StorageConfig(data_root=root),
        engine=EngineConfig(heartbeat_seconds=3600, commit_seconds=commit_seconds),
    )
    with Engine(config) as engine:
        batches: list[Batch] = []
        apply = engine.metadata.apply

        def recording(batch: Batch) -> Any:
            batches.append(batch)
            return apply(batch)

        engine.metadata.apply = recording  # type: ignore[method-assign]
        result = engine.launch(chain, {"x": 0})
    assert result.succeeded and result.outputs is not None
    assert result.outputs.literals["o0"].integer == CHAIN
    return batches, result.execution_id


def _commits_of_the_loop(batches: list[Batch], execution_id: str) -> list[Batch]:
    """The loop's transactions (not the execution's end, which the engine writes itself)."""
    return [b for b in batches if any(key[0] == execution_id for key in b.nodes)]


def test_a_chain_is_committed_in_a_few_transactions(tmp_path: Path) -> None:
    grouped, execution_id = _run(tmp_path / "grouped", commit_seconds=3600)
    # the first turn's writes at once, then everything else with the execution's end
    assert len(_commits_of_the_loop(grouped, execution_id)) == 2
    each_turn, execution_id = _run(tmp_path / "each-turn", commit_seconds=0)
    assert len(_commits_of_the_loop(each_turn, execution_id)) >= CHAIN


@pytest.mark.parametrize("commit_seconds", [0, 3600])
def test_every_commit_shows_the_execution_at_one_moment(
    tmp_path: Path, commit_seconds: float
) -> None:
    batches, execution_id = _run(tmp_path, commit_seconds)
    phases: dict[str, str] = {}
    for batch in _commits_of_the_loop(batches, execution_id):
        phases.update({node_id: rec.phase for (_, node_id), rec in batch.nodes.items()})
        for i in range(1, CHAIN):
            if f"n{i}" in phases:  # started (or done): its upstream node is done, committed
                assert phases[f"n{i - 1}"] == "SUCCEEDED", (i, phases)
    assert sorted(phases.values()) == ["SUCCEEDED"] * CHAIN
