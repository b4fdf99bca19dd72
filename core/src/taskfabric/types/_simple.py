"""Scalars: int, float, str, bool, bytes, datetime, timedelta and None."""

from __future__ import annotations

import numbers
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._context import TransformContext
from taskfabric.types._errors import LiteralConversionError, describe_value
from taskfabric.types._pytypes import NoneType, TypeHint
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine

T = TypeVar("T")

Literal = pb.Literal
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: protobuf Duration limit: +-10,000 years.
MAX_DURATION_SECONDS = 315_576_000_000
_NANOS_PER_MICRO = 1000


class _SimpleTransformer(TypeTransformer[T]):
    simple: pb.SimpleType.ValueType
    py_class: type[Any]

    def __init__(self) -> None:
        self.python_types = (self.py_class,)

    def matches(self, py_type: TypeHint) -> bool:
        return py_type is self.py_class

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        return pb.LiteralType(simple=self.simple)

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") == "simple" and literal_type.simple == self.simple:
            return self.py_class
        return None

    def _reject(self, value: Any, detail: str = "") -> LiteralConversionError:
        return LiteralConversionError(self.name, describe_value(value), detail=detail)


class IntTransformer(_SimpleTransformer[int]):
    name = "int"
    simple = pb.SIMPLE_TYPE_INTEGER
    py_class = int

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                detail = "bool is not int" if isinstance(value, bool) else ""
                raise self._reject(value, detail)
            value = int(value)  # numpy integers and other Integral types
        try:
            return Literal(integer=value)
        except ValueError:
            raise self._reject(value, "outside the signed 64-bit range") from None

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> int:
        if literal.WhichOneof("value") == "integer":
            return literal.integer
        result: int = self.mismatch(literal, py_type, ctx, engine)
        return result


class FloatTransformer(_SimpleTransformer[float]):
    """float; int values are accepted for float-typed parameters and converted."""

    name = "float"
    simple = pb.SIMPLE_TYPE_FLOAT
    py_class = float

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if type(value) is float:
            return Literal(float=value)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise self._reject(value, "bool is not float" if isinstance(value, bool) else "")
        try:
            return Literal(float=float(value))
        except OverflowError:
            raise self._reject(value, "too large for a float") from None

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> float:
        if literal.WhichOneof("value") == "float":
            return literal.float
        result: float = self.mismatch(literal, py_type, ctx, engine)
        return result


class StrTransformer(_SimpleTransformer[str]):
    name = "str"
    simple = pb.SIMPLE_TYPE_STRING
    py_class = str

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if type(value) is str:
            return Literal(string=value)
        if isinstance(value, str):  # str subclasses such as StrEnum members: the plain text
            return Literal(string=str.__str__(value))
        raise self._reject(value)

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> str:
        if literal.WhichOneof("value") == "string":
            return literal.string
        result: str = self.mismatch(literal, py_type, ctx, engine)
        return result


class BoolTransformer(_SimpleTransformer[bool]):
    name = "bool"
    simple = pb.SIMPLE_TYPE_BOOLEAN
    py_class = bool

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if type(value) is bool:
            return Literal(boolean=value)
        raise self._reject(value, "int is not bool" if isinstance(value, int) else "")

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> bool:
        if literal.WhichOneof("value") == "boolean":
            return literal.boolean
        result: bool = self.mismatch(literal, py_type, ctx, engine)
        return result


class BytesTransformer(_SimpleTransformer[bytes]):
    """bytes; bytearray and memoryview values are accepted and stored as bytes."""

    name = "bytes"
    simple = pb.SIMPLE_TYPE_BYTES
    py_class = bytes

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if type(value) is bytes:
            return Literal(bytes=value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return Literal(bytes=bytes(value))
        raise self._reject(value)

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> bytes:
        if literal.WhichOneof("value") == "bytes":
            return literal.bytes
        result: bytes = self.mismatch(literal, py_type, ctx, engine)
        return result


class DatetimeTransformer(_SimpleTransformer[datetime]):
    """Timezone-aware datetimes, carried as UTC instants (microsecond precision).

    Naive datetimes are rejected; values read back are in UTC (equal as instants).
    """

    name = "datetime"
    simple = pb.SIMPLE_TYPE_DATETIME
    py_class = datetime

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, datetime):
            raise self._reject(value)
        if value.tzinfo is None or value.utcoffset() is None:
            raise self._reject(
                value,
                "a naive datetime has no timezone: add tzinfo, "
                "e.g. value.replace(tzinfo=datetime.timezone.utc)",
            )
        try:
            delta = value - EPOCH
        except OverflowError:
            raise self._reject(value, "outside the datetime range once in UTC") from None
        literal = Literal()
        literal.datetime.seconds = delta.days * 86400 + delta.seconds
        literal.datetime.nanos = delta.microseconds * _NANOS_PER_MICRO
        return literal

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> datetime:
        if literal.WhichOneof("value") != "datetime":
            result: datetime = self.mismatch(literal, py_type, ctx, engine)
            return result
        stamp = literal.datetime
        try:
            return EPOCH + timedelta(
                seconds=stamp.seconds, microseconds=stamp.nanos // _NANOS_PER_MICRO
            )
        except OverflowError:
            raise LiteralConversionError(
                "datetime", f"timestamp {stamp.seconds}s", detail="outside datetime's range"
            ) from None


def duration_parts(value: timedelta) -> tuple[int, int]:
    """(seconds, nanos) of a timedelta with the same sign, as protobuf Duration wants."""
    micros = (value.days * 86400 + value.seconds) * 1_000_000 + value.microseconds
    sign = -1 if micros < 0 else 1
    seconds, rest = divmod(abs(micros), 1_000_000)
    return sign * seconds, sign * rest * _NANOS_PER_MICRO


class TimedeltaTransformer(_SimpleTransformer[timedelta]):
    """timedelta, carried as a protobuf Duration (microsecond precision, +-10,000 years)."""

    name = "timedelta"
    simple = pb.SIMPLE_TYPE_DURATION
    py_class = timedelta

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, timedelta):
            raise self._reject(value)
        seconds, nanos = duration_parts(value)
        if abs(seconds) > MAX_DURATION_SECONDS:
            raise self._reject(value, "longer than 10,000 years")
        literal = Literal()
        literal.duration.seconds = seconds
        literal.duration.nanos = nanos
        return literal

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> timedelta:
        if literal.WhichOneof("value") != "duration":
            result: timedelta = self.mismatch(literal, py_type, ctx, engine)
            return result
        nanos = literal.duration.nanos
        micros = -(-nanos // _NANOS_PER_MICRO) if nanos < 0 else nanos // _NANOS_PER_MICRO
        return timedelta(seconds=literal.duration.seconds, microseconds=micros)


class NoneTransformer(_SimpleTransformer[None]):
    """`None` / `type(None)`: the only value is None."""

    name = "None"
    simple = pb.SIMPLE_TYPE_NONE
    py_class = NoneType

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if value is not None:
            raise self._reject(value)
        return Literal(none=pb.NoneValue())

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> None:
        if literal.WhichOneof("value") != "none":
            self.mismatch(literal, py_type, ctx, engine)


def simple_transformers() -> list[TypeTransformer[Any]]:
    return [
        IntTransformer(),
        FloatTransformer(),
        StrTransformer(),
        BoolTransformer(),
        BytesTransformer(),
        DatetimeTransformer(),
        TimedeltaTransformer(),
        NoneTransformer(),
    ]
