"""Containers: list[T] and dict[str, T]."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError, describe_value
from taskfabric.types._pytypes import TypeHint, get_args, get_origin, py_type_str, strip_annotated
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine


def _args(py_type: TypeHint) -> tuple[Any, ...]:
    args: tuple[Any, ...] = strip_annotated(py_type)[0].__args__
    return args


class ListTransformer(TypeTransformer[list[Any]]):
    """list[T] (also typing.List[T]); the value must be a list."""

    name = "list"

    def matches(self, py_type: TypeHint) -> bool:
        return get_origin(py_type) is list and len(get_args(py_type)) == 1

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        item_type = engine.nested_literal_type(py_type, _args(py_type)[0])
        return pb.LiteralType(list_type=item_type)

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, list):
            raise LiteralConversionError(py_type_str(py_type), describe_value(value))
        item_type = _args(py_type)[0]
        to_literal = engine.to_literal
        literal = pb.Literal()
        items = literal.list.literals
        literal.list.SetInParent()
        index = 0
        try:
            for index, item in enumerate(value):  # noqa: B007 - index is used on error
                items.append(to_literal(item, item_type, ctx))
        except LiteralConversionError as error:
            raise error.add_parent(f"[{index}]") from None
        return literal

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> list[Any]:
        if literal.WhichOneof("value") != "list":
            result: list[Any] = self.mismatch(literal, py_type, ctx, engine)
            return result
        item_type = _args(py_type)[0]
        to_python = engine.to_python
        items: list[Any] = []
        try:
            for item in literal.list.literals:
                items.append(to_python(item, item_type, ctx))
        except LiteralConversionError as error:
            raise error.add_parent(f"[{len(items)}]") from None
        return items

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") == "list_type":
            return list[engine.guess_python_type(literal_type.list_type)]  # type: ignore[misc]
        return None


class DictTransformer(TypeTransformer[dict[str, Any]]):
    """dict[str, T] (also typing.Dict[str, T]); keys must be str."""

    name = "dict"

    def matches(self, py_type: TypeHint) -> bool:
        if get_origin(py_type) is not dict:
            return False
        args = get_args(py_type)
        return len(args) == 2 and args[0] is str

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        value_type = engine.nested_literal_type(py_type, _args(py_type)[1])
        return pb.LiteralType(map_value_type=value_type)

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, dict):
            raise LiteralConversionError(py_type_str(py_type), describe_value(value))
        value_type = _args(py_type)[1]
        to_literal = engine.to_literal
        literal = pb.Literal()
        entries = literal.map.literals
        literal.map.SetInParent()
        key: Any = None
        try:
            for key, item in value.items():
                if type(key) is not str:
                    raise LiteralConversionError(
                        "str key", describe_value(key), detail="map keys must be str"
                    )
                entries[key].CopyFrom(to_literal(item, value_type, ctx))
        except LiteralConversionError as error:
            raise error.add_parent(f"[{key!r}]") from None
        return literal

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> dict[str, Any]:
        if literal.WhichOneof("value") != "map":
            mismatched: dict[str, Any] = self.mismatch(literal, py_type, ctx, engine)
            return mismatched
        value_type = _args(py_type)[1]
        to_python = engine.to_python
        # Maps carry no order; keys come back sorted so that reading is deterministic.
        result: dict[str, Any] = {}
        entries = literal.map.literals
        for key in sorted(entries):
            try:
                result[key] = to_python(entries[key], value_type, ctx)
            except LiteralConversionError as error:
                raise error.add_parent(f"[{key!r}]") from None
        return result

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") == "map_value_type":
            return dict[str, engine.guess_python_type(literal_type.map_value_type)]  # type: ignore[misc]
        return None
