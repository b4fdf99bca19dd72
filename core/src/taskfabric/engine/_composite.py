"""Composite nodes in the execution loop: maps, sub-workflows and conditionals."""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskfabric.core.v1 import execution_pb2, types_pb2, workflow_pb2
from taskfabric.engine._bindings import evaluate
from taskfabric.engine._state import RUNNING, NodeState, Scope
from taskfabric.engine._util import _system_error
from taskfabric.logs import get_logger

if TYPE_CHECKING:
    from taskfabric.engine._runner import Runner

log = get_logger("taskfabric.engine")


def start_map(r: Runner, ns: NodeState) -> None:
    assert ns.task is not None
    types = {i.name: i.type for i in ns.task.interface.inputs}
    ns.inputs = r._resolve_inputs(ns, types)
    ns.inputs_uri = r._put_map(ns.full_id, "inputs.pb", ns.inputs)
    mapped = list(ns.node.map.mapped_inputs)
    lengths = {name: len(ns.inputs.literals[name].list.literals) for name in mapped}
    if len(set(lengths.values())) > 1:
        detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        r._fail(
            ns,
            _system_error("MapLengthMismatch", f"mapped inputs have different lengths ({detail})"),
        )
        return
    count = next(iter(lengths.values()), 0)
    ns.phase = RUNNING
    r._record(ns, f"{count} items")
    if count == 0:
        r._finish_map(ns)
        return
    broadcast = {k: v for k, v in ns.inputs.literals.items() if k not in lengths}
    item_node = workflow_pb2.Node(
        id=ns.node.id,
        name=ns.node.name,
        task=workflow_pb2.TaskNode(task_id=ns.node.map.task_id),
    )
    for i in range(count):
        item = r._make_node(f"{ns.full_id}[{i}]", item_node, ns.scope, parent=ns)
        item.kind = "map_item"
        item.task = ns.task
        item.task_def = ns.task_def
        item.item_index = i
        inputs = types_pb2.LiteralMap()
        for k, v in broadcast.items():
            inputs.literals[k].CopyFrom(v)
        for k in mapped:
            inputs.literals[k].CopyFrom(ns.inputs.literals[k].list.literals[i])
        item.inputs = inputs
        ns.items.append(item)
    for item in ns.items:
        r._ready(item)


def finish_map(r: Runner, ns: NodeState) -> None:
    assert ns.task is not None
    out = types_pb2.LiteralMap()
    for o in ns.task.interface.outputs:
        lit = out.literals[o.name]
        lit.list.SetInParent()
        for item in ns.items:
            assert item.outputs is not None
            lit.list.literals.append(item.outputs.literals[o.name])
    r._complete_composite(ns, out)


def complete_composite(r: Runner, ns: NodeState, out: types_pb2.LiteralMap) -> None:
    ns.outputs_uri = r._put_map(ns.full_id, "outputs.pb", out)
    r._succeeded(ns, out)


def start_subworkflow(r: Runner, ns: NodeState) -> None:
    template = r.subworkflows[ns.node.workflow.workflow_id.name]
    types = {i.name: i.type for i in template.interface.inputs}
    ns.inputs = r._resolve_inputs(ns, types)
    ns.inputs_uri = r._put_map(ns.full_id, "inputs.pb", ns.inputs)
    ns.phase = RUNNING
    r._record(ns)
    r._start_scope(Scope(ns.full_id + "/", template, ns.inputs, owner=ns))


def start_branch(r: Runner, ns: NodeState) -> None:
    scope = ns.scope
    chosen: workflow_pb2.Node | None = None
    for i, case in enumerate(ns.node.branch.cases):
        if evaluate(case.condition, scope.inputs, scope.outputs):
            chosen, label = case.then_node, f"case {i + 1} holds"
            break
    else:
        if ns.node.branch.HasField("else_node"):
            chosen, label = ns.node.branch.else_node, "else"
    if chosen is None:
        r._fail(
            ns,
            execution_pb2.ExecutionError(
                kind=execution_pb2.ErrorKind.ERROR_KIND_USER,
                code="NoCaseHeld",
                message=ns.node.branch.else_error or "no case of the conditional held",
            ),
        )
        return
    ns.phase = RUNNING
    r._record(ns, f"{label}: running {chosen.name or chosen.id}")
    child = r._make_node(f"{ns.full_id}/{chosen.id}", chosen, scope, parent=ns)
    r._ready(child)
