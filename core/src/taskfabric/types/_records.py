"""Records: dataclasses and pydantic models, and dataclasses built from record types."""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError, UnsupportedTypeError, describe_value
from taskfabric.types._literal_types import short_type_name
from taskfabric.types._pytypes import (
    TypeHint,
    py_type_str,
    qualified_name,
    short_name,
    strip_annotated,
)
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine


@dataclass(frozen=True)
class _Field:
    name: str
    py_type: Any
    #: Passed to the constructor (else set on the built object afterwards).
    init: bool
    #: Missing from a stored record is fine: the class fills in its default.
    has_default: bool


@dataclass(frozen=True)
class _RecordPlan:
    cls: type[Any]
    fields: tuple[_Field, ...]


class _RecordTransformer(TypeTransformer[Any]):
    """Shared by dataclasses and pydantic models: a record with one entry per field."""

    def _fields(self, cls: type[Any]) -> tuple[_Field, ...]:
        raise NotImplementedError

    def _build(self, cls: type[Any], init: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _plan(self, cls: type[Any], engine: TypeEngine) -> _RecordPlan:
        plans = engine.plan_cache(self)
        plan: _RecordPlan | None = plans.get(cls)
        if plan is None:
            plan = _RecordPlan(cls, self._fields(cls))
            plans.put(cls, plan)
        return plan

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        cls = _record_class(py_type)
        plan = self._plan(cls, engine)
        fields = [
            pb.RecordField(
                name=f.name,
                type=engine.nested_literal_type(
                    cls, f.py_type, field=f"{short_name(cls)}.{f.name}"
                ),
            )
            for f in plan.fields
        ]
        return pb.LiteralType(record=pb.RecordType(name=qualified_name(cls), fields=fields))

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        cls = _record_class(py_type)
        if not isinstance(value, cls):
            raise LiteralConversionError(py_type_str(cls), describe_value(value))
        to_literal = engine.to_literal
        literal = pb.Literal()
        entries = literal.record.fields
        literal.record.SetInParent()
        for field in self._plan(cls, engine).fields:
            try:
                entries[field.name].CopyFrom(
                    to_literal(getattr(value, field.name), field.py_type, ctx)
                )
            except LiteralConversionError as error:
                raise error.add_parent(f".{field.name}") from None
        return literal

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Any:
        if literal.WhichOneof("value") != "record":
            return self.mismatch(literal, py_type, ctx, engine)
        cls = _record_class(py_type)
        stored = literal.record.fields
        to_python = engine.to_python
        init: dict[str, Any] = {}
        late: list[tuple[str, Any]] = []
        for field in self._plan(cls, engine).fields:
            if field.name not in stored:
                if field.has_default or not field.init:
                    continue
                raise LiteralConversionError(
                    py_type_str(cls),
                    "a record without this field",
                    path=f".{field.name}",
                )
            try:
                value = to_python(stored[field.name], field.py_type, ctx)
            except LiteralConversionError as error:
                raise error.add_parent(f".{field.name}") from None
            if field.init:
                init[field.name] = value
            else:
                late.append((field.name, value))
        built = self._build(cls, init)
        for name, value in late:
            object.__setattr__(built, name, value)
        return built


def _record_class(py_type: TypeHint) -> type[Any]:
    cls: type[Any] = strip_annotated(py_type)[0]
    return cls


def _type_hints(cls: type[Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls, include_extras=True)
    except NameError as error:
        raise UnsupportedTypeError(
            cls,
            f"cannot resolve its field annotations ({error}): define the classes they refer "
            "to at module level, before use",
        ) from None


class DataclassTransformer(_RecordTransformer):
    """`@dataclass` classes: every field (init=False ones are set after construction).

    Fields missing from a stored record take their defaults (a record written by an older
    version of the class can still be read).
    """

    name = "dataclass"

    def matches(self, py_type: TypeHint) -> bool:
        return isinstance(py_type, type) and dataclasses.is_dataclass(py_type)

    def _fields(self, cls: type[Any]) -> tuple[_Field, ...]:
        hints = _type_hints(cls)
        return tuple(
            _Field(
                name=f.name,
                py_type=hints.get(f.name, f.type),
                init=f.init,
                has_default=f.default is not dataclasses.MISSING
                or f.default_factory is not dataclasses.MISSING,
            )
            for f in dataclasses.fields(cls)
        )

    def _build(self, cls: type[Any], init: dict[str, Any]) -> Any:
        return cls(**init)

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") != "record":
            return None
        record = literal_type.record
        fields = [(f.name, engine.guess_python_type(f.type)) for f in record.fields]
        try:
            cls = dataclasses.make_dataclass(short_type_name(record.name) or "Record", fields)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"cannot build a dataclass for record {record.name!r}: {error}"
            ) from None
        # Keep the original record name, so the guessed class has the same literal type.
        setattr(cls, "__taskfabric_record_name__", record.name)  # noqa: B010 - see qualified_name
        return cls


class PydanticTransformer(_RecordTransformer):
    """pydantic (v2) `BaseModel` subclasses: the fields in `model_fields`.

    Values are rebuilt with `model_construct` (the data was validated when it was written;
    validators do not run again). pydantic is never imported by this module: a class can
    only be a BaseModel if pydantic is already loaded.
    """

    name = "pydantic"

    def matches(self, py_type: TypeHint) -> bool:
        pydantic = sys.modules.get("pydantic")
        return (
            pydantic is not None
            and isinstance(py_type, type)
            and issubclass(py_type, pydantic.BaseModel)
            and py_type is not pydantic.BaseModel
        )

    def _fields(self, cls: type[Any]) -> tuple[_Field, ...]:
        fields = []
        for name, info in cls.model_fields.items():
            py_type = info.annotation
            if info.metadata:  # e.g. Annotated[File, Format("csv")]: keep our metadata
                py_type = typing.Annotated[(py_type, *info.metadata)]
            fields.append(_Field(name, py_type, init=True, has_default=not info.is_required()))
        return tuple(fields)

    def _build(self, cls: type[Any], init: dict[str, Any]) -> Any:
        return cls.model_construct(**init)
