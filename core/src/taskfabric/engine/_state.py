"""In-memory state of a running execution: scopes (workflow instances) and nodes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskfabric.core.v1 import tasks_pb2, types_pb2, workflow_pb2

# Phases, as stored in the metadata database (NodePhase / ExecutionPhase without prefix).
QUEUED = "QUEUED"
RUNNING = "RUNNING"
RETRYING = "RETRYING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
ABORTED = "ABORTED"
TIMED_OUT = "TIMED_OUT"
TERMINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, ABORTED, TIMED_OUT})


@dataclass(eq=False)
class Scope:
    """One instance of a workflow template: the primary workflow or a sub-workflow."""

    prefix: str
    template: workflow_pb2.WorkflowTemplate
    inputs: types_pb2.LiteralMap
    owner: NodeState | None = None
    outputs: dict[str, types_pb2.LiteralMap] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    remaining: int = 0


@dataclass(eq=False)
class NodeState:
    """One node (or map item, or chosen branch case) of an execution."""

    full_id: str
    node: workflow_pb2.Node
    scope: Scope
    kind: str  # task | map | map_item | branch | workflow
    parent: NodeState | None = None
    phase: str = QUEUED
    attempt: int = 0
    failures: int = 0
    deps: set[str] = field(default_factory=set)
    dependents: list[NodeState] = field(default_factory=list)
    task: tasks_pb2.TaskTemplate | None = None
    task_def: Any = None
    inputs: types_pb2.LiteralMap | None = None
    outputs: types_pb2.LiteralMap | None = None
    inputs_uri: str = ""
    outputs_uri: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    attempt_started_at: float | None = None
    error: dict[str, Any] | None = None
    message: str = ""
    # map nodes
    items: list[NodeState] = field(default_factory=list)
    items_done: int = 0
    item_index: int = 0
    # the backend running the current attempt, and the log links it gave for it so far
    backend: Any = None
    log_links: list[Any] = field(default_factory=list)
    # re-attach: the handle the next submit carries (an attempt a stopped engine process left
    # running), and whether the current attempt was submitted with one
    handle: str = ""
    reattached: bool = False
    # caching: key of this node's result, and hit/miss/written/disabled
    cache_key: str = ""
    cache_status: str = ""

    @property
    def name(self) -> str:
        if self.kind == "map_item" and self.parent is not None:
            return f"{self.parent.node.name}[{self.item_index}]"
        return self.node.name or self.node.id

    @property
    def attempt_id(self) -> str:
        return f"{self.scope_execution_id}/{self.full_id}/{self.attempt}"

    scope_execution_id: str = ""
