"""Unions: `A | B`, `typing.Union[A, B]` and `Optional[A]`."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._castable import is_castable
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError, UnsupportedTypeError, describe_value
from taskfabric.types._literal_types import type_str
from taskfabric.types._pytypes import (
    TypeHint,
    get_args,
    get_origin,
    is_union,
    normalize,
    py_type_str,
    strip_annotated,
)
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine


@dataclass(frozen=True)
class _UnionPlan:
    variants: tuple[Any, ...]
    literal_types: tuple[pb.LiteralType, ...]
    #: Python class -> index of the only variant of that class (for the exact-type pick).
    by_class: dict[type[Any], int]


def _variant_class(variant: TypeHint) -> type[Any] | None:
    base = normalize(strip_annotated(variant)[0])
    if isinstance(base, type):
        return base
    origin = get_origin(base)
    return origin if isinstance(origin, type) else None


# Literal kinds that can hold a value of each LiteralType kind (for bare, non-union literals).
_SIMPLE_KINDS: dict[int, str] = {
    pb.SIMPLE_TYPE_INTEGER: "integer",
    pb.SIMPLE_TYPE_FLOAT: "float",
    pb.SIMPLE_TYPE_STRING: "string",
    pb.SIMPLE_TYPE_BOOLEAN: "boolean",
    pb.SIMPLE_TYPE_BYTES: "bytes",
    pb.SIMPLE_TYPE_DATETIME: "datetime",
    pb.SIMPLE_TYPE_DURATION: "duration",
    pb.SIMPLE_TYPE_NONE: "none",
}
_TYPE_KINDS: dict[str, str] = {
    "list_type": "list",
    "map_value_type": "map",
    "record": "record",
    "enum_type": "enum",
    "blob": "blob",
    "dataframe": "dataframe",
}


def literal_fits(literal: pb.Literal, lt: pb.LiteralType) -> bool:
    """A shallow check that `literal` has the shape of type `lt`."""
    kind = literal.WhichOneof("value")
    type_kind = lt.WhichOneof("type")
    if type_kind == "simple":
        return _SIMPLE_KINDS.get(lt.simple) == kind
    if type_kind == "union_type":
        return any(literal_fits(literal, v) for v in lt.union_type.variants)
    if type_kind is None or _TYPE_KINDS.get(type_kind) != kind:
        return False
    if kind == "enum":
        return literal.enum.value in lt.enum_type.values
    if kind == "blob":
        return literal.blob.type.dimensionality == lt.blob.dimensionality
    return True


class UnionTransformer(TypeTransformer[Any]):
    """Unions. `to_literal` picks the variant whose class is exactly the value's class, else
    the first variant (in declaration order) that accepts the value; the literal records the
    variant's type so that reading picks the same variant."""

    name = "union"

    def matches(self, py_type: TypeHint) -> bool:
        return is_union(py_type)

    def _plan(self, py_type: TypeHint, engine: TypeEngine) -> _UnionPlan:
        plans = engine.plan_cache(self)
        plan: _UnionPlan | None = plans.get(py_type)
        if plan is None:
            variants = tuple(get_args(strip_annotated(py_type)[0]))
            literal_types = tuple(engine.literal_type(v) for v in variants)
            by_class: dict[type[Any], int] = {}
            ambiguous: set[type[Any]] = set()
            for index, variant in enumerate(variants):
                cls = _variant_class(variant)
                if cls is None or cls in ambiguous:
                    continue
                if cls in by_class:
                    del by_class[cls]
                    ambiguous.add(cls)
                else:
                    by_class[cls] = index
            plan = _UnionPlan(variants, literal_types, by_class)
            plans.put(py_type, plan)
        return plan

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        variants = get_args(strip_annotated(py_type)[0])
        literal_types = [engine.nested_literal_type(py_type, v) for v in variants]
        for i, first in enumerate(literal_types):
            for j in range(i + 1, len(literal_types)):
                if first == literal_types[j]:
                    raise UnsupportedTypeError(
                        py_type,
                        f"variants `{py_type_str(variants[i])}` and `{py_type_str(variants[j])}` "
                        f"are both stored as {type_str(first)}, so a stored value could not "
                        "tell which one it was: keep only one of them",
                    )
        return pb.LiteralType(union_type=pb.UnionType(variants=literal_types))

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        plan = self._plan(py_type, engine)
        index = plan.by_class.get(type(value))
        if index is not None:
            inner = engine.to_literal(value, plan.variants[index], ctx)
        else:
            inner, index = self._first_accepting(value, py_type, plan, ctx, engine)
        literal = pb.Literal()
        literal.union.value.CopyFrom(inner)
        literal.union.variant.CopyFrom(plan.literal_types[index])
        return literal

    def _first_accepting(
        self,
        value: Any,
        py_type: TypeHint,
        plan: _UnionPlan,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> tuple[pb.Literal, int]:
        for index, variant in enumerate(plan.variants):
            try:
                return engine.to_literal(value, variant, ctx), index
            except LiteralConversionError:
                continue
        raise LiteralConversionError(py_type_str(py_type), describe_value(value))

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Any:
        plan = self._plan(py_type, engine)
        if literal.WhichOneof("value") == "union":
            variant = literal.union.variant
            for index, lt in enumerate(plan.literal_types):
                if lt == variant:
                    return engine.to_python(literal.union.value, plan.variants[index], ctx)
            # A value from a different (but castable) union, e.g. a record of another class.
            for index, lt in enumerate(plan.literal_types):
                if is_castable(variant, lt):
                    return engine.to_python(literal.union.value, plan.variants[index], ctx)
            raise LiteralConversionError(
                py_type_str(py_type), f"a value of union variant {type_str(variant)}"
            )
        # A bare value: the compiler lets `T` flow into `T | ...`.
        errors: list[LiteralConversionError] = []
        for index, lt in enumerate(plan.literal_types):
            if literal_fits(literal, lt):
                try:
                    return engine.to_python(literal, plan.variants[index], ctx)
                except LiteralConversionError as error:
                    errors.append(error)
        if errors:
            raise errors[0]
        raise LiteralConversionError(
            py_type_str(py_type), f"a literal of kind {literal.WhichOneof('value') or 'unset'}"
        )

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") != "union_type":
            return None
        variants = tuple(engine.guess_python_type(v) for v in literal_type.union_type.variants)
        return typing.Union[variants]  # noqa: UP007 - built from a runtime tuple
