"""An attempt's start is committed before its backend is given it; a handle the backend
records as it submits (on the engine's loop thread) goes through the loop's own batch (one
`apply`, no transaction of `record_attempt_handle`'s), committed before the work starts; a
handle recorded from another thread (the process's full identity, by the thread that waits
for it) has its own. Counted, not timed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from taskfabric import task, workflow
from taskfabric.backends._pids import STARTING_PREFIX
from taskfabric.config import BackendConfig, Config, EngineConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata import AttemptRecord, Batch, NodeRecord


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def twice(x: int) -> int:
    return double(x=x)


def test_the_provisional_handle_goes_through_the_loops_batch(tmp_path: Path) -> None:
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(heartbeat_seconds=3600, commit_seconds=3600),
        task_types={"python": "procs"},
        backends={"procs": BackendConfig(driver="subprocess")},
    )
    with Engine(config) as engine:
        batches: list[Batch] = []
        alone: list[tuple[str, str]] = []  # (thread, handle) of handles with a transaction each
        apply = engine.metadata.apply
        record = engine.metadata.record_attempt_handle

        stored: list[str] = []  # the attempt's handle in the database after that commit

        def recording(batch: Batch) -> Any:
            batches.append(batch)
            apply(batch)
            for node, _ in batch.handles:
                (row,) = engine.metadata.attempts(node.execution_id, node.node_id)
                stored.append(row.handle)

        def recording_handle(node: NodeRecord, attempt: AttemptRecord) -> None:
            alone.append((threading.current_thread().name, attempt.handle))
            record(node, attempt)

        engine.metadata.apply = recording  # type: ignore[method-assign]
        engine.metadata.record_attempt_handle = recording_handle  # type: ignore[method-assign]
        result = engine.launch(twice, {"x": 21})
        assert result.succeeded and result.outputs is not None
        assert result.outputs.literals["o0"].integer == 42
        (attempt,) = engine.metadata.attempts(result.execution_id)
    with_start = [b for b in batches if b.handles]
    assert len(with_start) == 1
    (batch,) = with_start
    ((_, handled),) = batch.handles
    assert handled.handle.startswith(STARTING_PREFIX)
    assert stored == [handled.handle]
    # the transaction before it holds the attempt's start, its node and their events
    before = batches[batches.index(batch) - 1]
    started = before.attempts[(result.execution_id, handled.node_id, 1)]
    assert started.phase == "RUNNING"
    assert (result.execution_id, handled.node_id) in before.nodes
    assert any(e.node_id == handled.node_id and e.phase == "RUNNING" for e in before.events)
    # the process's identity, known once it runs, from the thread that waits for it
    ((thread, handle),) = alone
    assert thread.startswith("taskfabric-wait") and not handle.startswith(STARTING_PREFIX)
    assert attempt.handle == handle
