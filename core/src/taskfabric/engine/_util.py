"""Small pieces the execution loop shares: events, outcomes, errors, document keys, a
workflow template's dependencies."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from taskfabric.core.v1 import execution_pb2, types_pb2, workflow_pb2
from taskfabric.sdk._compiler import node_dependencies

K = TypeVar("K")
V = TypeVar("V")

_SYSTEM = execution_pb2.ErrorKind.ERROR_KIND_SYSTEM


class CancelRequested(Exception):
    """Someone asked (from another process, through the database) to cancel the execution."""


class EngineShutdown(BaseException):
    """The engine process is being stopped (server shutdown): leave the execution to be
    resumed instead of aborting it. Raised from a signal handler into the loop thread."""


@dataclass
class RunOutcome:
    phase: str
    outputs: types_pb2.LiteralMap | None
    error: dict[str, Any] | None


def node_key(full_id: str, name: str) -> str:
    """Where a node's documents live under its execution: `nodes/n1/3/outputs.pb`."""
    return f"nodes/{full_id.replace('[', '/').replace(']', '')}/{name}"


def error_dict(err: execution_pb2.ExecutionError, node_id: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": execution_pb2.ErrorKind.Name(err.kind).removeprefix("ERROR_KIND_").lower(),
        "code": err.code,
        "message": err.message,
    }
    if node_id or err.node_id:
        d["node_id"] = node_id or err.node_id
    if err.traceback:
        d["traceback"] = err.traceback
    return d


def user_error(code: str, message: str) -> execution_pb2.ExecutionError:
    """The task's own doing: running it again would not help."""
    return execution_pb2.ExecutionError(
        kind=execution_pb2.ErrorKind.ERROR_KIND_USER, code=code, message=message
    )


def system_error(
    code: str, message: str, *, retryable: bool = False
) -> execution_pb2.ExecutionError:
    return execution_pb2.ExecutionError(
        kind=_SYSTEM, code=code, message=message, retryable=retryable
    )


def kept_per_object(keep: int) -> Callable[[Callable[[K], V]], Callable[[K], V]]:
    """Make `make(obj)` run once per object: its value is kept by the object (held, so its
    id is not reused), at most `keep` of them (a long-lived process runs many workflows).
    For what a compiled workflow gives, which is never changed: a process launches the
    same one again and again (`wf(...)` in a notebook, an engine that stays open, a map of
    sub-workflows), and reading its protobuf fields per launch costs more than running a
    chain of 100 nodes from the cache."""

    def wrap(make: Callable[[K], V]) -> Callable[[K], V]:
        kept: dict[int, tuple[K, V]] = {}

        @functools.wraps(make)
        def get(obj: K) -> V:
            found = kept.get(id(obj))
            if found is not None and found[0] is obj:
                return found[1]
            value = make(obj)
            if len(kept) >= keep:
                kept.clear()
            kept[id(obj)] = (obj, value)
            return value

        return get

    return wrap


@kept_per_object(64)
def local_dependencies(template: workflow_pb2.WorkflowTemplate) -> dict[str, frozenset[str]]:
    """Each node of `template` -> the ids of the template's nodes it waits for (kept per
    template: `kept_per_object`)."""
    local_ids = {n.id for n in template.nodes}
    return {n.id: frozenset(node_dependencies(n) & local_ids) for n in template.nodes}


#: One node of a template as the loop makes its state: the node, its id, its kind (the
#: `target` it sets: task, map, workflow, branch), the name of the task it runs ("" for
#: none) and the ids of the template's nodes it waits for.
NodePlan = tuple[workflow_pb2.Node, str, str, str, frozenset[str]]


def node_kind(node: workflow_pb2.Node, map_item: bool = False) -> tuple[str, str]:
    """The kind of `node`'s state (the `target` it sets: task, map, workflow, branch; a
    map's item: map_item) and the name of the task it runs ("" for none; an item runs its
    map's, which its map node has)."""
    if map_item:
        return "map_item", ""
    kind = node.WhichOneof("target") or "task"
    if kind == "task":
        return kind, node.task.task_id.name
    return kind, node.map.task_id.name if kind == "map" else ""


@kept_per_object(64)
def node_plans(template: workflow_pb2.WorkflowTemplate) -> list[NodePlan]:
    """Each node of `template`, in order, with what making its state reads (`NodePlan`),
    kept per template (`kept_per_object`): a launch of the same compiled workflow makes its
    nodes' states without reading a protobuf field of them."""
    deps = local_dependencies(template)
    plans: list[NodePlan] = []
    for node in template.nodes:
        kind, task = node_kind(node)
        plans.append((node, node.id, kind, task, deps[node.id]))
    return plans
