"""Enums: `enum.Enum` subclasses, stored by member name."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError, UnsupportedTypeError, describe_value
from taskfabric.types._literal_types import short_type_name
from taskfabric.types._pytypes import TypeHint, py_type_str, qualified_name, strip_annotated
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine


def _enum_class(py_type: TypeHint) -> type[enum.Enum]:
    cls: type[enum.Enum] = strip_annotated(py_type)[0]
    return cls


class EnumTransformer(TypeTransformer[enum.Enum]):
    """`enum.Enum` subclasses (IntEnum, StrEnum too), stored by member name so that changing
    a member's value does not change stored data. Flag enums are not supported."""

    name = "enum"

    def matches(self, py_type: TypeHint) -> bool:
        return isinstance(py_type, type) and issubclass(py_type, enum.Enum)

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        cls = _enum_class(py_type)
        if issubclass(cls, enum.Flag):
            raise UnsupportedTypeError(
                py_type, "Flag enums are not supported: use list[SomeEnum] for a set of options"
            )
        if not cls.__members__:
            raise UnsupportedTypeError(py_type, "an enum without members carries no value")
        names = [member.name for member in cls]
        return pb.LiteralType(enum_type=pb.EnumType(name=qualified_name(cls), values=names))

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        cls = _enum_class(py_type)
        if not isinstance(value, cls):
            raise LiteralConversionError(
                f"{py_type_str(cls)} (one of {', '.join(cls.__members__)})",
                describe_value(value),
            )
        return pb.Literal(enum=pb.EnumValue(value=value.name))

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> enum.Enum:
        if literal.WhichOneof("value") != "enum":
            result: enum.Enum = self.mismatch(literal, py_type, ctx, engine)
            return result
        cls = _enum_class(py_type)
        member = cls.__members__.get(literal.enum.value)
        if member is None:
            raise LiteralConversionError(
                f"{py_type_str(cls)} (one of {', '.join(cls.__members__)})",
                f"member name {literal.enum.value!r}",
            )
        return member

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") != "enum_type":
            return None
        spec = literal_type.enum_type
        cls = enum.Enum(  # type: ignore[misc]
            short_type_name(spec.name) or "Enum", [(v, v) for v in spec.values]
        )
        setattr(cls, "__taskfabric_record_name__", spec.name)  # noqa: B010 - see qualified_name
        return cls
