"""Launch requests: what the scheduler (or a server) hands to whatever creates executions."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.errors import TaskfabricError


class LaunchError(TaskfabricError, ValueError):
    """A launch's inputs do not fit the workflow or the launch plan; `inputs` names the
    inputs at fault (missing or unknown), when the problem is theirs."""

    def __init__(self, message: str, *, inputs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.inputs = tuple(inputs)


@dataclass(frozen=True)
class LaunchRequest:
    """One execution to create: idempotent by (project, domain, name).

    `inputs` is complete: every workflow input has a value (given, launch plan default or
    fixed, or the workflow's own default). `code` is the workflow's code location (a bundle).
    """

    project: str
    domain: str
    name: str
    workflow: workflow_pb2.CompiledWorkflow
    inputs: types_pb2.LiteralMap
    code: dict[str, str] = field(default_factory=dict)
    #: "name:version" of the launch plan, or "" for a launch of the workflow itself.
    launch_plan: str = ""
    #: Cluster label for backends with several targets ("": the project's).
    cluster: str = ""
    #: The schedule slot (UTC epoch seconds) of a scheduled launch.
    scheduled_at: float | None = None


#: Creates the execution of a request (or finds the one of the same name) and returns its id.
Launcher = Callable[[LaunchRequest], str]


class SupportsEnqueue(Protocol):
    def enqueue(
        self,
        compiled: workflow_pb2.CompiledWorkflow,
        inputs: types_pb2.LiteralMap,
        *,
        project: str,
        domain: str,
        name: str,
        code: dict[str, str],
        **extra: Any,
    ) -> Any: ...


def enqueue_launcher(engine: SupportsEnqueue) -> Launcher:
    """A launcher that records QUEUED executions with `Engine.enqueue` for the workers."""

    def launch(request: LaunchRequest) -> str:
        extra: dict[str, Any] = {}
        if request.launch_plan:
            extra["launch_plan"] = request.launch_plan
        if request.scheduled_at is not None:
            extra["scheduled_at"] = request.scheduled_at
        if request.cluster:
            extra["cluster"] = request.cluster
        record = engine.enqueue(
            request.workflow,
            request.inputs,
            project=request.project,
            domain=request.domain,
            name=request.name,
            code=request.code,
            **extra,
        )
        return str(record.id)

    return launch


def complete_inputs(
    compiled: workflow_pb2.CompiledWorkflow,
    layers: Sequence[tuple[str, Mapping[str, types_pb2.Literal]]],
    *,
    what: str,
) -> types_pb2.LiteralMap:
    """Merge input layers (later layers win) over the workflow's defaults.

    Each layer is (description, values); unknown names and missing required inputs raise
    LaunchError naming `what` (the workflow or launch plan) and the input.
    """
    from taskfabric.types import type_str

    interface = compiled.primary.interface
    declared = {i.name: i for i in interface.inputs}
    expected = ", ".join(f"{i.name}: {type_str(i.type)}" for i in interface.inputs) or "none"
    merged: dict[str, types_pb2.Literal] = {}
    for source, values in layers:
        for key, value in values.items():
            if key not in declared:
                raise LaunchError(
                    f"{what}: {source} '{key}' is not an input of workflow "
                    f"'{compiled.primary.id.name}'; its inputs are: {expected}",
                    inputs=[key],
                )
            merged[key] = value
    out = types_pb2.LiteralMap()
    missing: dict[str, str] = {}
    for name, decl in declared.items():
        if name in merged:
            out.literals[name].CopyFrom(merged[name])
        elif decl.HasField("default"):
            out.literals[name].CopyFrom(decl.default)
        else:
            missing[name] = f"{name} ({type_str(decl.type)})"
    if missing:
        raise LaunchError(
            f"{what}: missing input {', '.join(missing.values())}", inputs=list(missing)
        )
    return out


def execution_name(plan: str, slot: float) -> str:
    """The name of the execution a schedule launches at `slot`: `<plan>-<UTC time>`, e.g.
    `nightly-20261127T010000Z`; the same slot always gives the same name."""
    return f"{plan}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(slot))}"


def new_execution_name() -> str:
    """A fresh name for an execution launched by hand."""
    return secrets.token_hex(6)
