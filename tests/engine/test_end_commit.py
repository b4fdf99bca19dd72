"""What a worker writes for a small execution it takes from the queue: the claim records its
start (nothing writes it again), no heartbeat is written before one is due, and the
execution's end is committed in one transaction with its last node's end. Counted, not
timed."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import ExecutionWorker, load_object
from taskfabric.metadata import Batch

FLOWS = """
from taskfabric import task, workflow


@task
def add_one(x: int) -> int:
    return x + 1


@workflow
def one(x: int) -> int:
    return add_one(x=x)
"""


@pytest.fixture
def worker(tmp_path: Path) -> Any:
    # heartbeats far apart: only what the run itself needs is written
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        engine=EngineConfig(heartbeat_seconds=3600),
    )
    found = ExecutionWorker(config, slots=2, isolate_code=False, poll_seconds=0.05)
    yield found
    found.engine.close()


def test_a_claimed_execution_ends_in_one_transaction_with_its_last_node(
    tmp_path: Path, worker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "endflows.py"
    path.write_text(textwrap.dedent(FLOWS))
    monkeypatch.syspath_prepend(str(tmp_path))
    wf, code = load_object(f"{path}:one")
    inputs = types_pb2.LiteralMap()
    inputs.literals["x"].integer = 41
    engine = worker.engine
    rec = engine.enqueue(wf.compile(), inputs, project="p", domain="d", name="e1", code=code)
    batches: list[Batch] = []
    apply = engine.metadata.apply

    def recording(batch: Batch) -> None:
        batches.append(batch)
        apply(batch)

    monkeypatch.setattr(engine.metadata, "apply", recording)
    assert worker.step() == 1
    worker.running[rec.id].join()
    ended = engine.metadata.get_execution(rec.id)
    assert ended is not None and (ended.phase, ended.owner) == ("SUCCEEDED", "")
    out = engine.read_literals(ended.outputs_uri)
    assert out is not None and out.literals["o0"].integer == 42
    mine = [b for b in batches if b]
    # the last transaction holds the node's end and the execution's end, and its event
    last = mine[-1]
    assert last.executions[rec.id]["phase"] == "SUCCEEDED"
    assert {n.phase for n in last.nodes.values()} == {"SUCCEEDED"}
    assert [e.phase for e in last.events if e.node_id == ""] == ["SUCCEEDED"]
    for batch in mine:
        values = batch.executions.get(rec.id, {})
        assert "started_at" not in values  # the claim recorded the start
        assert set(values) != {"heartbeat_at"}  # no heartbeat of its own
    events = [(e.node_id, e.phase) for e in engine.metadata.events(rec.id) if e.node_id == ""]
    assert events == [("", "RUNNING"), ("", "SUCCEEDED")]
