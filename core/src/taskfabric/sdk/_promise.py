"""Promises: the placeholders a workflow body handles instead of values."""

from __future__ import annotations

import typing
from typing import Any

from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.sdk._context import CompileContext
from taskfabric.sdk._interface import default_context
from taskfabric.types import default_engine, is_castable, type_str

_Op = workflow_pb2.ComparisonOperator


class Promise:
    """A value that exists only once the workflow runs: a workflow input or a node output."""

    __slots__ = ("binding", "literal_type", "node_id", "origin", "py_type")

    def __init__(
        self,
        binding: workflow_pb2.BindingData,
        literal_type: types_pb2.LiteralType,
        py_type: Any,
        origin: str,
        node_id: str = "",
    ) -> None:
        self.binding = binding
        self.literal_type = literal_type
        self.py_type = py_type
        self.origin = origin
        self.node_id = node_id

    def __repr__(self) -> str:
        return f"Promise({self.origin}: {type_str(self.literal_type)})"

    def __bool__(self) -> bool:
        raise TypeError(
            f"{self.origin} has no value while the workflow is being compiled, so it cannot "
            "drive a Python `if`, `and`, `or` or `not`: use "
            "`taskfabric.conditional(...).if_(...)` to branch on it, with `&` and `|` to "
            "combine conditions"
        )

    def __iter__(self) -> typing.Iterator[Any]:
        raise TypeError(
            f"{self.origin} cannot be iterated while the workflow is being compiled: use "
            "`taskfabric.map_task(task)(...)` to run a task over each element of a list"
        )

    def _no_value(self, use: str) -> TypeError:
        return TypeError(
            f"{self.origin} has no value while the workflow is being compiled, so it cannot be "
            f"used as {use} in the workflow's body: pass it to a task as an input and compute "
            "with it inside the @task (`map_task(task)(...)` runs a task over each element of "
            "a list)"
        )

    def __index__(self) -> int:  # range(n), a slice, a list index
        raise self._no_value("an index or a count (`range(...)`, `[...]`)")

    def __int__(self) -> int:
        raise self._no_value("a Python number (`int(...)`)")

    def __float__(self) -> float:
        raise self._no_value("a Python number (`float(...)`)")

    def __len__(self) -> int:
        raise self._no_value("a Python sequence (`len(...)`)")

    def __hash__(self) -> int:
        return id(self)

    def _cmp(self, other: Any, op: int) -> Comparison:
        return Comparison(op, self, other)

    def __eq__(self, other: object) -> Comparison:  # type: ignore[override]
        return self._cmp(other, _Op.COMPARISON_OPERATOR_EQ)

    def __ne__(self, other: object) -> Comparison:  # type: ignore[override]
        return self._cmp(other, _Op.COMPARISON_OPERATOR_NE)

    def __gt__(self, other: Any) -> Comparison:
        return self._cmp(other, _Op.COMPARISON_OPERATOR_GT)

    def __ge__(self, other: Any) -> Comparison:
        return self._cmp(other, _Op.COMPARISON_OPERATOR_GE)

    def __lt__(self, other: Any) -> Comparison:
        return self._cmp(other, _Op.COMPARISON_OPERATOR_LT)

    def __le__(self, other: Any) -> Comparison:
        return self._cmp(other, _Op.COMPARISON_OPERATOR_LE)

    def __and__(self, other: Condition | Promise) -> Condition:
        return Truth(self) & other

    def __or__(self, other: Condition | Promise) -> Condition:
        return Truth(self) | other

    def is_true(self) -> Condition:
        """This boolean value itself as a condition."""
        return Truth(self)

    def is_false(self) -> Condition:
        return Comparison(_Op.COMPARISON_OPERATOR_EQ, self, False)


class Condition:
    """A boolean expression over promises, built with comparisons, `&` and `|`."""

    def __and__(self, other: Condition | Promise) -> Condition:
        return Conjunction(
            workflow_pb2.ConjunctionOperator.CONJUNCTION_OPERATOR_AND, self, _cond(other)
        )

    def __or__(self, other: Condition | Promise) -> Condition:
        return Conjunction(
            workflow_pb2.ConjunctionOperator.CONJUNCTION_OPERATOR_OR, self, _cond(other)
        )

    def __rand__(self, other: Condition | Promise) -> Condition:
        return _cond(other) & self

    def __ror__(self, other: Condition | Promise) -> Condition:
        return _cond(other) | self

    def __bool__(self) -> bool:
        raise TypeError(
            "a condition on task outputs cannot drive a Python `if`, `and`, `or` or `not` "
            "inside a workflow: pass it to `conditional(...).if_(...)`, and combine "
            "conditions with `&` and `|` (parenthesised)"
        )

    def promises(self) -> list[Promise]:
        raise NotImplementedError

    def to_proto(self, ctx: CompileContext, location: str) -> workflow_pb2.BooleanExpression:
        raise NotImplementedError


_COMPARABLE = {
    types_pb2.SimpleType.SIMPLE_TYPE_INTEGER,
    types_pb2.SimpleType.SIMPLE_TYPE_FLOAT,
    types_pb2.SimpleType.SIMPLE_TYPE_STRING,
    types_pb2.SimpleType.SIMPLE_TYPE_BOOLEAN,
    types_pb2.SimpleType.SIMPLE_TYPE_DATETIME,
    types_pb2.SimpleType.SIMPLE_TYPE_DURATION,
}
_NUMERIC = {types_pb2.SimpleType.SIMPLE_TYPE_INTEGER, types_pb2.SimpleType.SIMPLE_TYPE_FLOAT}


def _operand(
    value: Any, other_type: types_pb2.LiteralType | None, ctx: CompileContext, location: str
) -> tuple[workflow_pb2.BindingData, types_pb2.LiteralType | None]:
    if isinstance(value, Promise):
        return value.binding, value.literal_type
    engine = default_engine()
    py_type: Any = type(value)
    try:
        lt = engine.literal_type(py_type)
        lit = engine.to_literal(value, py_type, default_context())
    except Exception as exc:
        ctx.issue(f"cannot compare with {value!r}: {exc}", location=location)
        return workflow_pb2.BindingData(), None
    return workflow_pb2.BindingData(literal=lit), lt


class Comparison(Condition):
    def __init__(self, op: int, left: Any, right: Any) -> None:
        self.op = op
        self.left = left
        self.right = right

    def promises(self) -> list[Promise]:
        return [p for p in (self.left, self.right) if isinstance(p, Promise)]

    def to_proto(self, ctx: CompileContext, location: str) -> workflow_pb2.BooleanExpression:
        left, lt = _operand(self.left, None, ctx, location)
        right, rt = _operand(self.right, lt, ctx, location)
        for t, side in ((lt, self.left), (rt, self.right)):
            if t is not None and (t.WhichOneof("type") != "simple" or t.simple not in _COMPARABLE):
                what = side.origin if isinstance(side, Promise) else repr(side)
                ctx.issue(
                    f"{what} of type {type_str(t)} cannot be compared: conditions compare "
                    "int, float, str, bool, datetime and timedelta values",
                    location=location,
                )
                return workflow_pb2.BooleanExpression()
        if (
            lt is not None
            and rt is not None
            and lt != rt
            and not (lt.simple in _NUMERIC and rt.simple in _NUMERIC)
        ):
            ctx.issue(f"cannot compare {type_str(lt)} with {type_str(rt)}", location=location)
        return workflow_pb2.BooleanExpression(
            comparison=workflow_pb2.Comparison(operator=self.op, left=left, right=right)  # type: ignore[arg-type]
        )


class Truth(Condition):
    def __init__(self, value: Promise) -> None:
        self.value = value

    def promises(self) -> list[Promise]:
        return [self.value]

    def to_proto(self, ctx: CompileContext, location: str) -> workflow_pb2.BooleanExpression:
        lt = self.value.literal_type
        if (
            lt.WhichOneof("type") != "simple"
            or lt.simple != types_pb2.SimpleType.SIMPLE_TYPE_BOOLEAN
        ):
            ctx.issue(
                f"{self.value.origin} is {type_str(lt)}, not bool: compare it, e.g. `x > 0`",
                location=location,
            )
        return workflow_pb2.BooleanExpression(value=self.value.binding)


class Conjunction(Condition):
    def __init__(self, op: int, left: Condition, right: Condition) -> None:
        self.op = op
        self.left = left
        self.right = right

    def promises(self) -> list[Promise]:
        return self.left.promises() + self.right.promises()

    def to_proto(self, ctx: CompileContext, location: str) -> workflow_pb2.BooleanExpression:
        return workflow_pb2.BooleanExpression(
            conjunction=workflow_pb2.Conjunction(
                operator=self.op,  # type: ignore[arg-type]
                left=self.left.to_proto(ctx, location),
                right=self.right.to_proto(ctx, location),
            )
        )


def _cond(value: Any) -> Condition:
    cond = as_condition(value)
    if cond is None:
        raise TypeError(
            f"cannot combine a condition with {value!r}: combine conditions on workflow "
            "values, e.g. `(x > 1) & flag` where flag is a bool input or task output"
        )
    return cond


def as_condition(value: Any) -> Condition | None:
    if isinstance(value, Condition):
        return value
    if isinstance(value, Promise):
        return Truth(value)
    return None


def bind(
    value: Any,
    expected: types_pb2.LiteralType,
    py_type: Any,
    ctx: CompileContext,
    *,
    node: str,
    input: str,
    location: str,
    upstream: set[str],
) -> workflow_pb2.BindingData:
    """Turn a value given to an input into a binding, checking its type.

    Problems are recorded on `ctx` (so that one compile reports all of them) and an empty
    binding is returned in their place.
    """
    if isinstance(value, Promise):
        if value.node_id:
            upstream.add(value.node_id)
        if not is_castable(value.literal_type, expected):
            ctx.issue(
                f"expected {type_str(expected)}, got {type_str(value.literal_type)} "
                f"from {value.origin}",
                node=node,
                input=input,
                location=location,
            )
        return value.binding
    kind = expected.WhichOneof("type")
    if isinstance(value, list) and _contains_promise(value):
        if kind != "list_type":
            ctx.issue(
                f"expected {type_str(expected)}, got a list of task outputs",
                node=node,
                input=input,
                location=location,
            )
            return workflow_pb2.BindingData()
        args = typing.get_args(py_type)
        elem_py = args[0] if args else Any
        items = [
            bind(
                v,
                expected.list_type,
                elem_py,
                ctx,
                node=node,
                input=f"{input}[{i}]",
                location=location,
                upstream=upstream,
            )
            for i, v in enumerate(value)
        ]
        return workflow_pb2.BindingData(collection=workflow_pb2.BindingCollection(bindings=items))
    if isinstance(value, dict) and _contains_promise(value):
        if kind != "map_value_type":
            ctx.issue(
                f"expected {type_str(expected)}, got a dict of task outputs",
                node=node,
                input=input,
                location=location,
            )
            return workflow_pb2.BindingData()
        args = typing.get_args(py_type)
        val_py = args[1] if len(args) == 2 else Any
        entries = {
            str(k): bind(
                v,
                expected.map_value_type,
                val_py,
                ctx,
                node=node,
                input=f"{input}[{k!r}]",
                location=location,
                upstream=upstream,
            )
            for k, v in value.items()
        }
        return workflow_pb2.BindingData(map=workflow_pb2.BindingMap(bindings=entries))
    try:
        literal = default_engine().to_literal(value, py_type, default_context())
    except Exception as exc:
        ctx.issue(
            f"expected {type_str(expected)}, got {value!r} ({exc})",
            node=node,
            input=input,
            location=location,
        )
        return workflow_pb2.BindingData()
    return workflow_pb2.BindingData(literal=literal)


def _contains_promise(value: Any) -> bool:
    if isinstance(value, Promise):
        return True
    if isinstance(value, list):
        return any(_contains_promise(v) for v in value)
    if isinstance(value, dict):
        return any(_contains_promise(v) for v in value.values())
    return False
