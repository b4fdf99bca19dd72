"""What a launch and a resume check about a workflow: its inputs as literals, where its
code lives (so a resume can load it again), and whether its DAG is still the recorded one."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.sdk import TaskDefinition, WorkflowDefinition
from taskfabric.types import TransformContext, default_engine, type_str


def convert_inputs(
    wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any], ctx: TransformContext
) -> types_pb2.LiteralMap:
    """The workflow's inputs as literals: given values converted, defaults filled in."""
    engine = default_engine()
    unknown = sorted(set(inputs) - set(wf.interface.inputs))
    if unknown:
        expected = ", ".join(
            f"{p.name}: {type_str(p.literal_type)}" for p in wf.interface.inputs.values()
        )
        raise TaskfabricError(
            f"workflow '{wf.short_name}' has no input named {', '.join(unknown)}; "
            f"its inputs are: {expected or 'none'}"
        )
    out = types_pb2.LiteralMap()
    for i, (name, param) in enumerate(wf.interface.inputs.items()):
        if name in inputs:
            try:
                lit = engine.to_literal(inputs[name], param.py_type, ctx)
            except Exception as exc:
                raise TaskfabricError(
                    f"workflow '{wf.short_name}', input '{name}': expected "
                    f"{type_str(param.literal_type)}: {exc}"
                ) from exc
            out.literals[name].CopyFrom(lit)
        elif param.required:
            raise TaskfabricError(
                f"workflow '{wf.short_name}' needs input '{name}' ({type_str(param.literal_type)})"
            )
        else:
            out.literals[name].CopyFrom(wf.interface.proto.inputs[i].default)
    return out


def code_of(wf: WorkflowDefinition[Any, Any]) -> dict[str, str]:
    """Where the workflow's function is defined: its file (or module) and qualified name."""
    module = sys.modules.get(wf.function.__module__)
    file = getattr(module, "__file__", None)
    if file:
        return {"file": os.path.abspath(file), "object": wf.function.__qualname__}
    return {"module": wf.function.__module__, "object": wf.function.__qualname__}


def same_dag(a: workflow_pb2.WorkflowTemplate, b: workflow_pb2.WorkflowTemplate) -> bool:
    """Whether two templates have the same nodes, bindings and types (source lines and
    descriptions do not count)."""
    return _dag(a) == _dag(b)


def _dag(template: workflow_pb2.WorkflowTemplate) -> bytes:
    copy = workflow_pb2.WorkflowTemplate()
    copy.CopyFrom(template)
    copy.ClearField("location")
    copy.ClearField("description")

    def strip(node: workflow_pb2.Node) -> None:
        node.ClearField("location")
        if node.WhichOneof("target") == "branch":
            for case in node.branch.cases:
                strip(case.then_node)
            if node.branch.HasField("else_node"):
                strip(node.branch.else_node)

    for node in copy.nodes:
        strip(node)
    return copy.SerializeToString(deterministic=True)


def not_a_workflow(obj: object, what: str) -> str:
    """Why `obj` cannot be launched, and what to launch instead."""
    if isinstance(obj, TaskDefinition):
        return (
            f"{what} runs a workflow, and {obj.name} is a task: call it from a @workflow "
            f"function (`return {obj.short_name}(...)`) and launch that workflow"
        )
    return f"{what} runs a @workflow, not {type(obj).__name__} {obj!r:.80}"
