"""Checks of a compiled workflow that hold whoever built it.

The SDK checks each binding as it records it; these checks run again over the finished
`CompiledWorkflow` (references, types, cycles), so templates built by other means — by
hand, by another SDK, loaded from a registry — get the same guarantees.
"""

from __future__ import annotations

from collections.abc import Iterator

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.errors import CompileIssue
from taskfabric.sdk._context import location_text
from taskfabric.types import is_castable, type_str


def _refs(data: workflow_pb2.BindingData) -> Iterator[workflow_pb2.BindingData]:
    kind = data.WhichOneof("value")
    if kind == "collection":
        for item in data.collection.bindings:
            yield from _refs(item)
    elif kind == "map":
        for item in data.map.bindings.values():
            yield from _refs(item)
    elif kind is not None:
        yield data


def _expr_refs(expr: workflow_pb2.BooleanExpression) -> Iterator[workflow_pb2.BindingData]:
    kind = expr.WhichOneof("expr")
    if kind == "comparison":
        yield from _refs(expr.comparison.left)
        yield from _refs(expr.comparison.right)
    elif kind == "conjunction":
        yield from _expr_refs(expr.conjunction.left)
        yield from _expr_refs(expr.conjunction.right)
    elif kind == "value":
        yield from _refs(expr.value)


def node_dependencies(node: workflow_pb2.Node) -> set[str]:
    """Ids of the nodes whose outputs `node` reads, plus its declared upstream nodes."""
    deps = set(node.upstream_node_ids)
    for b in node.inputs:
        for ref in _refs(b.binding):
            if ref.WhichOneof("value") == "output":
                deps.add(ref.output.node_id)
    if node.WhichOneof("target") == "branch":
        for case in node.branch.cases:
            for ref in _expr_refs(case.condition):
                if ref.WhichOneof("value") == "output":
                    deps.add(ref.output.node_id)
            deps |= node_dependencies(case.then_node)
        if node.branch.HasField("else_node"):
            deps |= node_dependencies(node.branch.else_node)
    deps.discard(node.id)
    return deps


def find_cycle(deps: dict[str, set[str]]) -> list[str] | None:
    """A cycle in the dependency graph as a list of node ids, or None."""
    white, grey, black = 0, 1, 2
    color = dict.fromkeys(deps, white)
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        color[n] = grey
        stack.append(n)
        for d in sorted(deps.get(n, ())):
            if color.get(d, black) == grey:
                return [*stack[stack.index(d) :], d]
            if color.get(d) == white:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        color[n] = black
        return None

    for n in sorted(deps):
        if color[n] == white:
            found = visit(n)
            if found:
                return found
    return None


def _binding_type(
    data: workflow_pb2.BindingData,
    expected: types_pb2.LiteralType,
    wf: workflow_pb2.WorkflowTemplate,
    outputs: dict[str, dict[str, types_pb2.LiteralType]],
) -> tuple[str | None, str]:
    """(problem or None, description of the source) for one binding against a type."""
    kind = data.WhichOneof("value")
    if kind == "workflow_input":
        inputs = {i.name: i.type for i in wf.interface.inputs}
        if data.workflow_input not in inputs:
            return (f"refers to unknown workflow input '{data.workflow_input}'", "")
        got = inputs[data.workflow_input]
        source = f"workflow input '{data.workflow_input}'"
    elif kind == "output":
        ref = data.output
        if ref.node_id not in outputs:
            return (f"refers to unknown node '{ref.node_id}'", "")
        if ref.output not in outputs[ref.node_id]:
            have = ", ".join(outputs[ref.node_id]) or "none"
            return (
                f"refers to output '{ref.output}' of node '{ref.node_id}', which has "
                f"outputs: {have}",
                "",
            )
        got = outputs[ref.node_id][ref.output]
        source = f"output '{ref.output}' of node '{ref.node_id}'"
    elif kind == "collection":
        if expected.WhichOneof("type") != "list_type":
            return (f"expected {type_str(expected)}, got a list", "")
        for item in data.collection.bindings:
            problem, _ = _binding_type(item, expected.list_type, wf, outputs)
            if problem:
                return problem, ""
        return None, ""
    elif kind == "map":
        if expected.WhichOneof("type") != "map_value_type":
            return (f"expected {type_str(expected)}, got a map", "")
        for item in data.map.bindings.values():
            problem, _ = _binding_type(item, expected.map_value_type, wf, outputs)
            if problem:
                return problem, ""
        return None, ""
    elif kind == "literal":
        return None, ""
    else:
        return ("is not bound", "")
    if not is_castable(got, expected):
        return (f"expected {type_str(expected)}, got {type_str(got)} from {source}", source)
    return None, source


def _validate_workflow(
    wf: workflow_pb2.WorkflowTemplate,
    tasks: dict[str, workflow_pb2.Node | object],
    task_inputs: dict[str, dict[str, types_pb2.LiteralType]],
    sub_inputs: dict[str, dict[str, types_pb2.LiteralType]],
) -> list[CompileIssue]:
    name = wf.id.name.rsplit(".", 1)[-1]
    issues: list[CompileIssue] = []
    outputs: dict[str, dict[str, types_pb2.LiteralType]] = {}
    seen: set[str] = set()
    for node in wf.nodes:
        if node.id in seen:
            issues.append(CompileIssue(name, "duplicate node id", node=node.id))
        seen.add(node.id)
        outputs[node.id] = {o.name: o.type for o in node.interface.outputs}

    def check_node(node: workflow_pb2.Node) -> None:
        label = f"{node.id} ({node.name})" if node.name else node.id
        where = location_text(node.location)
        target = node.WhichOneof("target")
        if target in ("task", "map"):
            task_id = node.task.task_id if target == "task" else node.map.task_id
            inputs = task_inputs.get(task_id.name)
            if inputs is None:
                issues.append(
                    CompileIssue(
                        name, f"calls unknown task '{task_id.name}'", node=label, location=where
                    )
                )
                return
        elif target == "workflow":
            inputs = sub_inputs.get(node.workflow.workflow_id.name)
            if inputs is None:
                issues.append(
                    CompileIssue(
                        name,
                        f"calls unknown workflow '{node.workflow.workflow_id.name}'",
                        node=label,
                        location=where,
                    )
                )
                return
        elif target == "branch":
            for case in node.branch.cases:
                for ref in _expr_refs(case.condition):
                    problem, _ = _binding_type(ref, _ANY_SIMPLE, wf, outputs)
                    if problem and "expected" not in problem:
                        issues.append(
                            CompileIssue(name, f"condition {problem}", node=label, location=where)
                        )
                check_node(case.then_node)
            if node.branch.HasField("else_node"):
                check_node(node.branch.else_node)
            elif not node.branch.else_error:
                issues.append(
                    CompileIssue(name, "conditional has no else case", node=label, location=where)
                )
            return
        else:
            issues.append(CompileIssue(name, "node has no target", node=label, location=where))
            return
        mapped = set(node.map.mapped_inputs) if target == "map" else set()
        bound = set()
        for b in node.inputs:
            bound.add(b.var)
            if b.var not in inputs:
                issues.append(
                    CompileIssue(name, "unknown input", node=label, input=b.var, location=where)
                )
                continue
            expected = inputs[b.var]
            if b.var in mapped:
                expected = types_pb2.LiteralType(list_type=expected)
            problem, _ = _binding_type(b.binding, expected, wf, outputs)
            if problem:
                issues.append(CompileIssue(name, problem, node=label, input=b.var, location=where))
        for missing in sorted(set(inputs) - bound):
            issues.append(
                CompileIssue(name, "input is not bound", node=label, input=missing, location=where)
            )

    for node in wf.nodes:
        check_node(node)
    for b in wf.outputs:
        declared = {o.name: o.type for o in wf.interface.outputs}
        if b.var not in declared:
            issues.append(CompileIssue(name, "binds an undeclared output", input=b.var))
            continue
        problem, _ = _binding_type(b.binding, declared[b.var], wf, outputs)
        if problem:
            issues.append(CompileIssue(name, problem, node="outputs", input=b.var))
    for missing in sorted({o.name for o in wf.interface.outputs} - {b.var for b in wf.outputs}):
        issues.append(
            CompileIssue(name, "output is never produced: no binding returns it", input=missing)
        )
    deps = {n.id: node_dependencies(n) for n in wf.nodes}
    for node_id, ds in deps.items():
        for d in sorted(ds - set(deps)):
            issues.append(CompileIssue(name, f"depends on unknown node '{d}'", node=node_id))
    cycle = find_cycle(deps)
    if cycle:
        issues.append(CompileIssue(name, "cycle between nodes: " + " -> ".join(cycle)))
    return issues


_ANY_SIMPLE = types_pb2.LiteralType()


def validate_compiled(compiled: workflow_pb2.CompiledWorkflow) -> list[CompileIssue]:
    """Every problem with a compiled workflow: references, bindings, types and cycles."""
    task_inputs = {t.id.name: {i.name: i.type for i in t.interface.inputs} for t in compiled.tasks}
    workflows = [compiled.primary, *compiled.subworkflows]
    sub_inputs = {
        w.id.name: {i.name: i.type for i in w.interface.inputs} for w in compiled.subworkflows
    }
    issues: list[CompileIssue] = []
    for wf in workflows:
        issues += _validate_workflow(wf, {}, task_inputs, sub_inputs)
    return issues
