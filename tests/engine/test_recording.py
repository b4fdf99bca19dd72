"""The rows the Recorder builds (by position, for speed) carry each of the node's and the
attempt's values in the field of that name; what a commit holds follows what was recorded."""

from __future__ import annotations

from typing import Any

from taskfabric.core.v1 import tasks_pb2, types_pb2, workflow_pb2
from taskfabric.engine._recording import Recorder
from taskfabric.engine._state import RUNNING, SUCCEEDED, NodeState, Scope
from taskfabric.metadata import AttemptRecord, Batch, EventRecord, NodeRecord
from taskfabric.plugin_api import LogLink


class _Store:
    def __init__(self) -> None:
        self.batches: list[Batch] = []

    def apply(self, batch: Batch) -> None:
        self.batches.append(batch)

    def cancel_requested(self, execution_id: str, since: float) -> str | None:
        return None


class _Backend:
    name = "local-7"


def _recorder(store: _Store) -> Recorder:
    return Recorder(
        execution_id="exec-1",
        metadata=store,  # type: ignore[arg-type]
        heartbeat_seconds=3600,
        commit_seconds=3600,
    )


def _node(owner: NodeState | None = None) -> NodeState:
    template = workflow_pb2.WorkflowTemplate()
    scope = Scope("sub/", template, types_pb2.LiteralMap(), owner=owner)
    node = workflow_pb2.Node(id="n4", name="step")
    task = tasks_pb2.TaskTemplate()
    task.id.name = "pkg.step"
    ns = NodeState("sub/n4", node, scope, "task", scope_execution_id="exec-1")
    ns.task = task
    ns.phase = SUCCEEDED
    ns.attempt = 3
    ns.inputs_uri = "file:///in"
    ns.outputs_uri = "file:///out"
    ns.started_at = 10.0
    ns.finished_at = 12.5
    ns.attempt_started_at = 11.0
    ns.error = {"code": "X"}
    ns.cache_status = "miss"
    ns.backend = _Backend()
    return ns


def test_node_row_fields_by_name() -> None:
    store = _Store()
    recorder = _recorder(store)
    owner = NodeState("wf1", workflow_pb2.Node(id="wf1"), _node().scope, "workflow")
    ns = _node(owner)
    record = recorder.node(ns, "done here")
    assert record == NodeRecord(
        execution_id="exec-1",
        node_id="sub/n4",
        kind="task",
        phase=SUCCEEDED,
        name="step",
        parent_id="wf1",
        task_name="pkg.step",
        attempts=3,
        inputs_uri="file:///in",
        outputs_uri="file:///out",
        started_at=10.0,
        finished_at=12.5,
        error={"code": "X"},
        message="done here",
        cache_status="miss",
    )
    assert ns.message == "done here"
    recorder.commit()
    (batch,) = store.batches
    assert batch.nodes == {("exec-1", "sub/n4"): record}
    (event,) = batch.events
    assert (event.execution_id, event.node_id, event.attempt, event.phase, event.message) == (
        "exec-1",
        "sub/n4",
        3,
        SUCCEEDED,
        "done here",
    )
    assert isinstance(event, EventRecord)


def test_attempt_row_fields_by_name() -> None:
    store = _Store()
    recorder = _recorder(store)
    ns = _node()
    running = recorder.attempt(ns, RUNNING)
    assert running == AttemptRecord(
        execution_id="exec-1",
        node_id="sub/n4",
        attempt=3,
        phase=RUNNING,
        started_at=11.0,
        finished_at=None,
        error=None,
        backend="local-7",
        log_links=[],
    )
    ended = recorder.attempt(ns, "FAILED", {"code": "Y"}, [LogLink("log", "file:///log")])
    assert (ended.phase, ended.error, ended.backend) == ("FAILED", {"code": "Y"}, "local-7")
    assert ended.finished_at is not None and ended.started_at == 11.0
    assert ended.log_links == [{"name": "log", "uri": "file:///log"}]
    recorder.commit()
    (batch,) = store.batches
    assert batch.attempts == {("exec-1", "sub/n4", 3): ended}  # the last one recorded


def test_commit_only_when_something_was_recorded() -> None:
    store = _Store()
    recorder = _recorder(store)
    assert recorder.commit_due_in() is None
    recorder.commit()
    assert store.batches == []
    recorder.attempt(_node(), RUNNING, lazy=True)  # a lazy write alone is something too
    assert recorder.commit_due_in() is not None
    recorder.commit()
    assert len(store.batches) == 1 and store.batches[0].attempts
    assert recorder.commit_due_in() is None
    recorder.flush()  # the first heartbeat is due at once: a transaction of its own
    assert len(store.batches) == 2 and "exec-1" in store.batches[1].executions
    recorder.flush()  # nothing recorded, no heartbeat due: no transaction
    assert len(store.batches) == 2
    recorder.node(_node())
    recorder.flush(force=True)  # what was recorded, with a heartbeat
    assert len(store.batches) == 3 and store.batches[2].nodes and store.batches[2].executions


def test_record_read_as_any_other(tmp_path: Any) -> None:
    # a row built by position is the same dataclass a keyword-built one is
    ns = _node()
    assert type(_recorder(_Store()).node(ns)) is NodeRecord
