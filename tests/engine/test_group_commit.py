"""Commits: everything recorded is committed before an attempt is handed to its backend,
whatever the commit window; the transitions of loop turns that hand none over are grouped
(`commit_seconds`); every transaction leaves the execution as it was at one moment (never a
node's start without its upstream node's end). Counted, not timed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskfabric import map_task, task, workflow
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


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def fan_out(n: int) -> int:
    return total(xs=map_task(inc)(x=numbers(n=n)))


def _run(
    root: Path, commit_seconds: float, wf: Any = chain, inputs: dict[str, int] | None = None
) -> tuple[list[Batch], str]:
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
        result = engine.launch(wf, inputs or {"x": 0})
    assert result.succeeded and result.outputs is not None
    if wf is chain:
        assert result.outputs.literals["o0"].integer == CHAIN
    return batches, result.execution_id


def _commits_of_the_loop(batches: list[Batch], execution_id: str) -> list[Batch]:
    """The loop's transactions (not the execution's end, which the engine writes itself)."""
    return [b for b in batches if any(key[0] == execution_id for key in b.nodes)]


@pytest.mark.parametrize("commit_seconds", [0, 3600])
def test_each_attempt_is_committed_before_it_runs(tmp_path: Path, commit_seconds: float) -> None:
    batches, execution_id = _run(tmp_path, commit_seconds)
    commits = _commits_of_the_loop(batches, execution_id)
    # one before each hand-off (the first holds n0's start, the next n0's end and n1's
    # start, ...), then the last node's end with the execution's
    assert len(commits) == CHAIN + 1
    for i, batch in enumerate(commits[:CHAIN]):
        phases = {node_id: rec.phase for (_, node_id), rec in batch.nodes.items()}
        ended = {f"n{i - 1}": "SUCCEEDED"} if i else {}
        assert phases == {**ended, f"n{i}": "RUNNING"}, (i, phases)
        assert {(a.node_id, a.phase) for a in batch.attempts.values()} == {
            *((f"n{i - 1}", "SUCCEEDED") for _ in ended),
            (f"n{i}", "RUNNING"),
        }


def test_turns_that_start_no_attempt_are_committed_together(tmp_path: Path) -> None:
    # 16 items on 8 slots: the ends of the last items start nothing, and wait for the next
    # hand-off (`total`'s), whatever the turns they came in
    grouped, execution_id = _run(tmp_path / "grouped", 3600, fan_out, {"n": 16})
    commits = _commits_of_the_loop(grouped, execution_id)
    assert (
        sum(
            rec.phase == "SUCCEEDED" and "[" in node_id
            for b in commits
            for (_, node_id), rec in b.nodes.items()
        )
        == 16
    )
    # every commit but the execution's last is one before a hand-off
    for batch in commits[:-1]:
        assert any(a.phase == "RUNNING" for a in batch.attempts.values()), batch.nodes.keys()
    assert any(k[1] == "n2" for k in commits[-2].nodes)  # total's start


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
