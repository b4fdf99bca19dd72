"""Compiling workflows: every binding is type-checked before anything runs."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from taskfabric import CompilationError, TaskDefinitionError, conditional, map_task, task, workflow
from taskfabric.core.v1 import workflow_pb2
from taskfabric.sdk._compiler import validate_compiled


@task
def make_text(n: int) -> str:
    return "x" * n


@task
def double(x: int) -> int:
    return 2 * x


@task
def add(a: int, b: int = 1) -> int:
    return a + b


@dataclass
class Point:
    x: float
    y: float


@task
def origin() -> Point:
    return Point(0.0, 0.0)


def test_task_is_a_plain_function_outside_workflows() -> None:
    assert double(21) == 42
    assert add(a=1) == 2


def test_compile_records_nodes_and_bindings() -> None:
    @workflow
    def wf(n: int) -> int:
        return add(a=double(x=n), b=3)

    compiled = wf.compile()
    nodes = compiled.primary.nodes
    assert [n.name for n in nodes] == ["double", "add"]
    assert nodes[0].inputs[0].binding.workflow_input == "n"
    a, b = nodes[1].inputs
    assert a.binding.output.node_id == nodes[0].id and a.binding.output.output == "o0"
    assert b.binding.literal.integer == 3
    assert list(nodes[1].upstream_node_ids) == [nodes[0].id]
    assert compiled.primary.outputs[0].binding.output.node_id == nodes[1].id
    assert {t.id.name for t in compiled.tasks} == {double.name, add.name}


def test_default_input_of_a_task_is_bound_explicitly() -> None:
    @workflow
    def wf(n: int) -> int:
        return add(a=n)

    node = wf.compile().primary.nodes[0]
    assert {b.var: b.binding.literal.integer for b in node.inputs}["b"] == 1


def test_type_mismatch_names_workflow_node_input_line_and_types() -> None:
    @workflow
    def mismatched(n: int) -> int:
        text = make_text(n=n)
        return double(x=text)  # the line reported

    with pytest.raises(CompilationError) as info:
        mismatched.compile()
    msg = str(info.value)
    assert "workflow 'mismatched'" in msg
    assert "node 'n1 (double)'" in msg
    assert "input 'x'" in msg
    assert "expected int, got str from output 'o0' of node 'n0' (make_text)" in msg
    assert "test_compile.py:" in msg
    line = info.value.issues[0].location.rsplit(":", 1)[1]
    with open(__file__) as fh:
        assert "the line reported" in fh.read().splitlines()[int(line) - 1]


def test_missing_and_unknown_inputs_are_reported_together() -> None:
    @workflow
    def wf(n: int) -> int:
        return add(c=n)  # type: ignore[call-arg]

    with pytest.raises(CompilationError) as info:
        wf.compile()
    issues = info.value.issues
    assert len(issues) == 2
    assert any(
        i.input == "c" and "unknown input" in i.message and "a: int" in i.message for i in issues
    )
    assert any(i.input == "a" and "missing input of type int" in i.message for i in issues)


def test_output_never_produced() -> None:
    @workflow
    def wf(n: int) -> int:
        double(x=n)
        return None  # type: ignore[return-value]

    with pytest.raises(CompilationError, match="output 'o0'.*never produced"):
        wf.compile()


def test_workflow_constant_of_wrong_type() -> None:
    @workflow
    def wf() -> int:
        return double(x="seven")  # type: ignore[arg-type]

    with pytest.raises(CompilationError, match="input 'x': expected int, got 'seven'"):
        wf.compile()


def test_record_types_must_match() -> None:
    @workflow
    def wf() -> int:
        return double(x=origin())  # type: ignore[arg-type]

    with pytest.raises(CompilationError, match=r"expected int, got Point\{x: float, y: float\}"):
        wf.compile()


def test_unsupported_type_fails_at_decoration_naming_function_parameter_and_type() -> None:
    with pytest.raises(TaskDefinitionError) as info:

        @task
        def bad(x: object) -> int:
            return 1

    msg = str(info.value)
    assert (
        "task 'test_unsupported_type_fails_at_decoration_naming_function_parameter_and_type"
        ".<locals>.bad'" in msg
    )
    assert "parameter 'x'" in msg
    assert "object" in msg


def test_missing_annotation_is_an_error() -> None:
    with pytest.raises(TaskDefinitionError, match=r"parameter 'x'.*no type annotation"):

        @task
        def bad(x) -> int:  # type: ignore[no-untyped-def]
            return 1

    with pytest.raises(TaskDefinitionError, match="return type.*not annotated"):

        @task
        def bad2(x: int):  # type: ignore[no-untyped-def]
            return 1


def test_python_if_on_a_promise_explains_conditional() -> None:
    @workflow
    def wf(n: int) -> int:
        if double(x=n) > 3:  # noqa: SIM108
            return n
        return n

    with pytest.raises(TypeError, match=r"conditional\(\.\.\.\)\.if_"):
        wf.compile()


def test_cycle_in_a_hand_built_template_is_rejected() -> None:
    @workflow
    def wf(n: int) -> int:
        return double(x=double(x=n))

    compiled = workflow_pb2.CompiledWorkflow()
    compiled.CopyFrom(wf.compile())
    first = compiled.primary.nodes[0]
    first.inputs[0].binding.Clear()
    first.inputs[0].binding.output.node_id = compiled.primary.nodes[1].id
    first.inputs[0].binding.output.output = "o0"
    issues = validate_compiled(compiled)
    assert any("cycle between nodes: n0 -> n1 -> n0" in i.message for i in issues), issues


def test_hand_built_template_with_bad_reference() -> None:
    @workflow
    def wf(n: int) -> int:
        return double(x=n)

    compiled = workflow_pb2.CompiledWorkflow()
    compiled.CopyFrom(wf.compile())
    compiled.primary.nodes[0].inputs[0].binding.workflow_input = "nope"
    issues = validate_compiled(compiled)
    assert any("unknown workflow input 'nope'" in i.message for i in issues)


def test_map_task_outputs_are_lists_and_elements_are_checked() -> None:
    @task
    def numbers(n: int) -> list[int]:
        return list(range(n))

    @task
    def total(xs: list[int]) -> int:
        return sum(xs)

    @workflow
    def ok(n: int) -> int:
        return total(xs=map_task(double, concurrency=2)(x=numbers(n=n)))

    node = ok.compile().primary.nodes[1]
    assert node.WhichOneof("target") == "map"
    assert list(node.map.mapped_inputs) == ["x"]
    assert node.map.concurrency == 2
    assert node.interface.outputs[0].type.list_type.simple

    @task
    def words(n: int) -> list[str]:
        return ["a"] * n

    @workflow
    def bad(n: int) -> list[int]:
        return map_task(double)(x=words(n=n))

    with pytest.raises(CompilationError, match=r"expected list\[int\] to map over"):
        bad.compile()


def test_map_task_runs_as_plain_python_outside_workflows() -> None:
    assert map_task(add)(a=[1, 2, 3], b=10) == [11, 12, 13]


def test_conditional_compiles_to_a_branch_node() -> None:
    @workflow
    def wf(n: int) -> int:
        return (
            conditional("sign")
            .if_(n > 0)
            .then(double(x=n))
            .elif_((n < -10) | (n == -1))
            .then(add(a=n))
            .else_()
            .then(add(a=n, b=100))
        )

    primary = wf.compile().primary
    assert len(primary.nodes) == 1
    branch = primary.nodes[0].branch
    assert len(branch.cases) == 2
    assert branch.cases[0].then_node.name == "double"
    assert branch.cases[1].condition.WhichOneof("expr") == "conjunction"
    assert branch.else_node.name == "add"
    assert primary.outputs[0].binding.output.node_id == primary.nodes[0].id


def test_conditional_cases_must_agree_on_outputs() -> None:
    @workflow
    def wf(n: int) -> int:
        return conditional("c").if_(n > 0).then(double(x=n)).else_().then(make_text(n=n))

    with pytest.raises(CompilationError, match="every case must produce the same outputs"):
        wf.compile()


def test_subworkflow_becomes_a_workflow_node() -> None:
    @workflow
    def inner(x: int) -> int:
        return double(x=double(x=x))

    @workflow
    def outer(n: int) -> int:
        return add(a=inner(x=n))

    compiled = outer.compile()
    assert compiled.primary.nodes[0].WhichOneof("target") == "workflow"
    assert [w.id.name for w in compiled.subworkflows] == [inner.name]
    assert {t.id.name for t in compiled.tasks} == {double.name, add.name}


def test_errors_in_a_subworkflow_name_both_workflows() -> None:
    @workflow
    def inner(x: int) -> int:
        return double(x=make_text(n=x))

    @workflow
    def outer(n: int) -> int:
        return inner(x=n)

    with pytest.raises(CompilationError, match="workflow 'outer > inner'"):
        outer.compile()


def test_resources_are_the_requests_and_the_limits_unless_one_side_is_given() -> None:
    from taskfabric import Resources

    @task(resources=Resources(cpu="500m", memory="256Mi"))
    def both() -> int:
        return 1

    @task(resources=Resources(cpu="1", memory="1Gi"), limits=Resources(memory="2Gi"))
    def wider() -> int:
        return 1

    t = both.template()
    assert (t.resources.requests.cpu, t.resources.requests.memory) == ("500m", "256Mi")
    assert (t.resources.limits.cpu, t.resources.limits.memory) == ("500m", "256Mi")
    t = wider.template()
    assert (t.resources.requests.cpu, t.resources.requests.memory) == ("1", "1Gi")
    assert (t.resources.limits.cpu, t.resources.limits.memory) == ("", "2Gi")
