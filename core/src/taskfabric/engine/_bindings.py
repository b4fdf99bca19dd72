"""Resolving bindings to literals, and evaluating branch conditions, at run time."""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.engine._util import kept_per_object

if TYPE_CHECKING:
    from taskfabric.engine._state import Scope

_Op = workflow_pb2.ComparisonOperator
_OPS: dict[int, Callable[[Any, Any], bool]] = {
    _Op.COMPARISON_OPERATOR_EQ: operator.eq,
    _Op.COMPARISON_OPERATOR_NE: operator.ne,
    _Op.COMPARISON_OPERATOR_GT: operator.gt,
    _Op.COMPARISON_OPERATOR_GE: operator.ge,
    _Op.COMPARISON_OPERATOR_LT: operator.lt,
    _Op.COMPARISON_OPERATOR_LE: operator.le,
}


class BindingError(Exception):
    """A binding could not be resolved at run time (a bug or a corrupt store)."""


def resolve(
    data: workflow_pb2.BindingData,
    inputs: types_pb2.LiteralMap,
    outputs: Mapping[str, types_pb2.LiteralMap],
) -> types_pb2.Literal:
    kind = data.WhichOneof("value")
    if kind == "literal":
        return data.literal
    if kind == "workflow_input":
        try:
            return inputs.literals[data.workflow_input]
        except KeyError:
            raise BindingError(f"workflow input '{data.workflow_input}' has no value") from None
    if kind == "output":
        ref = data.output
        try:
            return outputs[ref.node_id].literals[ref.output]
        except KeyError:
            raise BindingError(
                f"output '{ref.output}' of node '{ref.node_id}' is not available"
            ) from None
    if kind == "collection":
        lit = types_pb2.Literal()
        lit.list.SetInParent()
        for item in data.collection.bindings:
            lit.list.literals.append(resolve(item, inputs, outputs))
        return lit
    if kind == "map":
        lit = types_pb2.Literal()
        lit.map.SetInParent()
        for key, item in data.map.bindings.items():
            lit.map.literals[key].CopyFrom(resolve(item, inputs, outputs))
        return lit
    raise BindingError("empty binding")


#: where each input of a node comes from, when every binding is an upstream node's output
#: or a workflow input: (input name, the node's id or "" for a workflow input, the output's
#: or the workflow input's name)
Plan = tuple[tuple[str, str, str], ...]


@kept_per_object(64)
def input_plans(template: workflow_pb2.WorkflowTemplate) -> dict[str, Plan | None]:
    """Each node of `template` -> its `Plan`, or None when a binding is of another kind (a
    literal, a collection, a map: `resolve` reads those). Kept per template
    (`kept_per_object`): reading a node's bindings from protobuf costs a cache hit of a
    chain about a tenth."""
    return {node.id: _plan(node) for node in template.nodes}


def _plan(node: workflow_pb2.Node) -> Plan | None:
    steps = []
    for b in node.inputs:
        data = b.binding
        kind = data.WhichOneof("value")
        if kind == "output":
            steps.append((b.var, data.output.node_id, data.output.output))
        elif kind == "workflow_input":
            steps.append((b.var, "", data.workflow_input))
        else:
            return None
    return tuple(steps)


def planned(scope: Scope, node_id: str) -> types_pb2.LiteralMap | None:
    """The inputs of node `node_id` of `scope`'s template by its `Plan` (what `resolve`
    gives for each binding), or None when it has none."""
    plan = input_plans(scope.template).get(node_id)
    if plan is None:
        return None
    inputs, outputs = scope.inputs, scope.outputs
    out = types_pb2.LiteralMap()
    literals = out.literals
    for var, source, name in plan:
        try:
            lit = outputs[source].literals[name] if source else inputs.literals[name]
        except KeyError:
            raise BindingError(
                f"output '{name}' of node '{source}' is not available"
                if source
                else f"workflow input '{name}' has no value"
            ) from None
        literals[var].CopyFrom(lit)
    return out


_SIMPLE_KIND = {
    "integer": types_pb2.SimpleType.SIMPLE_TYPE_INTEGER,
    "float": types_pb2.SimpleType.SIMPLE_TYPE_FLOAT,
    "string": types_pb2.SimpleType.SIMPLE_TYPE_STRING,
    "boolean": types_pb2.SimpleType.SIMPLE_TYPE_BOOLEAN,
    "bytes": types_pb2.SimpleType.SIMPLE_TYPE_BYTES,
    "datetime": types_pb2.SimpleType.SIMPLE_TYPE_DATETIME,
    "duration": types_pb2.SimpleType.SIMPLE_TYPE_DURATION,
    "none": types_pb2.SimpleType.SIMPLE_TYPE_NONE,
}


def _fits(lit: types_pb2.Literal, lt: types_pb2.LiteralType) -> bool:
    """Whether a literal's shape matches a (non-union) type, looking one level deep."""
    value_kind = lit.WhichOneof("value")
    type_kind = lt.WhichOneof("type")
    if type_kind == "simple":
        return _SIMPLE_KIND.get(value_kind or "") == lt.simple
    if type_kind == "union_type":
        return value_kind == "union" or any(_fits(lit, v) for v in lt.union_type.variants)
    return {
        "list_type": "list",
        "map_value_type": "map",
        "record": "record",
        "enum_type": "enum",
        "blob": "blob",
        "dataframe": "dataframe",
    }.get(type_kind or "") == value_kind


def coerce(lit: types_pb2.Literal, target: types_pb2.LiteralType) -> types_pb2.Literal:
    """Shape a literal for the type it is bound to: values bound to a union (or Optional)
    are wrapped in the variant they fit, element by element inside lists and maps."""
    type_kind = target.WhichOneof("type")
    value_kind = lit.WhichOneof("value")
    if type_kind == "union_type" and value_kind != "union":
        for variant in target.union_type.variants:
            if _fits(lit, variant):
                wrapped = types_pb2.Literal()
                wrapped.union.value.CopyFrom(coerce(lit, variant))
                wrapped.union.variant.CopyFrom(variant)
                return wrapped
        return lit
    if type_kind == "list_type" and value_kind == "list" and _needs_coercion(target.list_type):
        out = types_pb2.Literal()
        out.list.SetInParent()
        for item in lit.list.literals:
            out.list.literals.append(coerce(item, target.list_type))
        return out
    if (
        type_kind == "map_value_type"
        and value_kind == "map"
        and _needs_coercion(target.map_value_type)
    ):
        out = types_pb2.Literal()
        out.map.SetInParent()
        for key, item in lit.map.literals.items():
            out.map.literals[key].CopyFrom(coerce(item, target.map_value_type))
        return out
    return lit


def _needs_coercion(lt: types_pb2.LiteralType) -> bool:
    kind = lt.WhichOneof("type")
    if kind == "union_type":
        return True
    if kind == "list_type":
        return _needs_coercion(lt.list_type)
    if kind == "map_value_type":
        return _needs_coercion(lt.map_value_type)
    return False


def needs_coercion(lt: types_pb2.LiteralType) -> bool:
    return _needs_coercion(lt)


def scalar_value(lit: types_pb2.Literal) -> Any:
    kind = lit.WhichOneof("value")
    if kind == "union":
        return scalar_value(lit.union.value)
    if kind == "none" or kind is None:
        return None
    if kind == "datetime":
        return lit.datetime.seconds * 1_000_000_000 + lit.datetime.nanos
    if kind == "duration":
        return lit.duration.seconds * 1_000_000_000 + lit.duration.nanos
    if kind in ("integer", "float", "string", "boolean", "bytes"):
        return getattr(lit, kind)
    raise BindingError(f"a {kind} value cannot be compared")


def evaluate(
    expr: workflow_pb2.BooleanExpression,
    inputs: types_pb2.LiteralMap,
    outputs: Mapping[str, types_pb2.LiteralMap],
) -> bool:
    kind = expr.WhichOneof("expr")
    if kind == "comparison":
        c = expr.comparison
        left = scalar_value(resolve(c.left, inputs, outputs))
        right = scalar_value(resolve(c.right, inputs, outputs))
        if (left is None or right is None) and c.operator not in (
            _Op.COMPARISON_OPERATOR_EQ,
            _Op.COMPARISON_OPERATOR_NE,
        ):
            raise BindingError("cannot order a None value; compare it with == or != only")
        return bool(_OPS[c.operator](left, right))
    if kind == "conjunction":
        j = expr.conjunction
        if j.operator == workflow_pb2.ConjunctionOperator.CONJUNCTION_OPERATOR_AND:
            return evaluate(j.left, inputs, outputs) and evaluate(j.right, inputs, outputs)
        return evaluate(j.left, inputs, outputs) or evaluate(j.right, inputs, outputs)
    if kind == "value":
        return bool(scalar_value(resolve(expr.value, inputs, outputs)))
    raise BindingError("empty condition")
