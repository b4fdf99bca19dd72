"""An attempt's start is committed before its work begins: with the provisional handle
that a backend which records one before starting the work (`Backend.handle_before_start`)
records as it submits, on the engine's loop thread, in one transaction (the loop's own
batch: no transaction of `record_attempt_handle`'s, none before `submit`); else before
`submit`. A handle recorded from another thread (the process's full identity, by the thread
that waits for it) has its own. Counted, not timed."""

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
    # the same transaction holds the attempt's start and its node (whose rows are its
    # RUNNING and QUEUED events: none is written); none before it was committed for the attempt
    started = batch.attempts[(result.execution_id, handled.node_id, 1)]
    assert started.phase == "RUNNING"
    assert (result.execution_id, handled.node_id) in batch.nodes
    assert not any(e.node_id == handled.node_id for e in batch.events)
    assert not any(b.attempts for b in batches[: batches.index(batch)])
    # the process's identity, known once it runs, from the thread that waits for it
    ((thread, handle),) = alone
    assert thread.startswith("taskfabric-wait") and not handle.startswith(STARTING_PREFIX)
    assert attempt.handle == handle


def test_a_backend_without_an_early_handle_has_the_start_committed_before_submit(
    tmp_path: Path,
) -> None:
    """The in-process `local` backend records no handle: the attempt's start is committed
    before `submit` is called."""
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(heartbeat_seconds=3600, commit_seconds=3600),
    )
    with Engine(config) as engine:
        seen: list[str] = []  # the attempt's phase in the database when submit was called
        backend = engine.backends.named("local")
        assert not backend.handle_before_start
        submit = backend.submit

        def submitting(attempt: Any) -> None:
            rows = engine.metadata.attempts(attempt.execution_id, attempt.node_id)
            seen.extend(r.phase for r in rows)
            submit(attempt)

        backend.submit = submitting  # type: ignore[method-assign]
        result = engine.launch(twice, {"x": 21})
        assert result.succeeded
    assert seen == ["RUNNING"]
