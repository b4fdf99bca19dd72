"""A node's inputs by its binding plan (`_bindings.planned`): the same literals as
`resolve` gives binding by binding, read once per template."""

from __future__ import annotations

import pytest

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.engine._bindings import BindingError, input_plans, planned, resolve
from taskfabric.engine._state import Scope


def _template() -> workflow_pb2.WorkflowTemplate:
    template = workflow_pb2.WorkflowTemplate()
    first = template.nodes.add(id="n0")
    first.inputs.add(var="x").binding.workflow_input = "x"
    second = template.nodes.add(id="n1")
    second.inputs.add(var="a").binding.output.SetInParent()
    second.inputs[0].binding.output.node_id = "n0"
    second.inputs[0].binding.output.output = "o0"
    second.inputs.add(var="b").binding.workflow_input = "y"
    third = template.nodes.add(id="n2")
    third.inputs.add(var="c").binding.literal.integer = 7
    return template


def test_a_plan_gives_what_resolve_gives() -> None:
    template = _template()
    inputs = types_pb2.LiteralMap()
    inputs.literals["x"].integer = 1
    inputs.literals["y"].string = "why"
    outputs = {"n0": types_pb2.LiteralMap()}
    outputs["n0"].literals["o0"].integer = 2
    for node in template.nodes[:2]:
        found = planned(Scope("", template, inputs, outputs=outputs), node.id)
        expected = types_pb2.LiteralMap()
        for b in node.inputs:
            expected.literals[b.var].CopyFrom(resolve(b.binding, inputs, outputs))
        assert found == expected
    # a literal binding has no plan: `resolve` reads it
    assert planned(Scope("", template, inputs, outputs=outputs), "n2") is None
    assert input_plans(template) is input_plans(template)  # read once per template


def test_an_upstream_node_without_outputs_is_a_binding_error() -> None:
    inputs = types_pb2.LiteralMap()
    inputs.literals["y"].string = "why"
    with pytest.raises(BindingError, match="output 'o0' of node 'n0' is not available"):
        planned(Scope("", _template(), inputs), "n1")
