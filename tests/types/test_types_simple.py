"""Scalars: round trips, strictness (bool is not int), datetimes and durations."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated

import pytest
from hypothesis import given
from hypothesis import strategies as st

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import LiteralConversionError, TypeEngine, type_str

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
AWARE = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.builds(
        timezone, st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
    ),
)
DURATIONS = st.timedeltas(min_value=timedelta(days=-3_000_000), max_value=timedelta(days=3_000_000))


def roundtrip(engine: TypeEngine, value: object, py_type: object) -> object:
    return engine.to_python(engine.to_literal(value, py_type), py_type)


@given(value=INT64)
def test_int_round_trip(value: int) -> None:
    engine = TypeEngine.with_builtins()
    literal = engine.to_literal(value, int)
    assert literal.integer == value
    assert roundtrip(engine, value, int) == value


@given(value=st.floats(allow_nan=False))
def test_float_round_trip_including_infinities(value: float) -> None:
    engine = TypeEngine.with_builtins()
    back = roundtrip(engine, value, float)
    assert back == value and type(back) is float
    assert math.copysign(1, back) == math.copysign(1, value)  # -0.0 keeps its sign


def test_nan_round_trips_as_nan(engine: TypeEngine) -> None:
    back = roundtrip(engine, math.nan, float)
    assert isinstance(back, float) and math.isnan(back)


@given(value=st.text())
def test_str_round_trip(value: str) -> None:
    assert roundtrip(TypeEngine.with_builtins(), value, str) == value


@given(value=st.binary())
def test_bytes_round_trip(value: bytes) -> None:
    assert roundtrip(TypeEngine.with_builtins(), value, bytes) == value


@given(value=AWARE)
def test_datetime_round_trip_is_the_same_instant_in_utc(value: datetime) -> None:
    back = roundtrip(TypeEngine.with_builtins(), value, datetime)
    assert isinstance(back, datetime)
    assert back == value
    assert back.utcoffset() == timedelta(0)


@given(value=DURATIONS)
def test_timedelta_round_trip(value: timedelta) -> None:
    assert roundtrip(TypeEngine.with_builtins(), value, timedelta) == value


@pytest.mark.parametrize("value", [True, False])
def test_bool_round_trip(engine: TypeEngine, value: bool) -> None:
    assert roundtrip(engine, value, bool) is value


def test_none_round_trip(engine: TypeEngine) -> None:
    assert engine.to_literal(None, None).WhichOneof("value") == "none"
    assert roundtrip(engine, None, type(None)) is None


def test_int_accepted_for_float_and_converted(engine: TypeEngine) -> None:
    literal = engine.to_literal(3, float)
    assert literal.WhichOneof("value") == "float"
    back = engine.to_python(literal, float)
    assert back == 3.0 and type(back) is float


@pytest.mark.parametrize(
    ("value", "py_type", "detail"),
    [
        (True, int, "bool is not int"),
        (1, bool, "int is not bool"),
        (False, float, "bool is not float"),
        ("3", int, ""),
        (3.0, int, ""),
        (2**63, int, "64-bit"),
        (b"x", str, ""),
        ("x", bytes, ""),
        (0, type(None), ""),
    ],
)
def test_values_that_do_not_fit_are_rejected(
    engine: TypeEngine, value: object, py_type: object, detail: str
) -> None:
    with pytest.raises(LiteralConversionError) as info:
        engine.to_literal(value, py_type)
    message = str(info.value)
    assert type(value).__name__ in message
    assert detail in message


def test_naive_datetime_is_rejected_with_a_fix(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="tzinfo"):
        engine.to_literal(datetime(2024, 1, 1), datetime)


def test_datetime_values_come_back_in_utc(engine: TypeEngine) -> None:
    paris_summer = timezone(timedelta(hours=2))
    value = datetime(2024, 6, 1, 14, 30, 15, 123456, tzinfo=paris_summer)
    literal = engine.to_literal(value, datetime)
    assert literal.datetime.seconds == int(value.timestamp())
    assert literal.datetime.nanos == 123456000
    assert engine.to_python(literal, datetime) == datetime(
        2024, 6, 1, 12, 30, 15, 123456, tzinfo=UTC
    )


def test_negative_duration_has_same_sign_seconds_and_nanos(engine: TypeEngine) -> None:
    literal = engine.to_literal(timedelta(seconds=-1.5), timedelta)
    assert (literal.duration.seconds, literal.duration.nanos) == (-1, -500_000_000)
    assert engine.to_python(literal, timedelta) == timedelta(seconds=-1.5)


def test_too_long_duration_is_rejected(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="10,000 years"):
        engine.to_literal(timedelta(days=999_999_999), timedelta)


def test_literal_types_of_scalars(engine: TypeEngine) -> None:
    names = {
        int: "int",
        float: "float",
        str: "str",
        bool: "bool",
        bytes: "bytes",
        datetime: "datetime",
        timedelta: "timedelta",
        None: "None",
    }
    for py_type, name in names.items():
        assert type_str(engine.literal_type(py_type)) == name


def test_annotated_with_foreign_metadata_is_the_base_type(engine: TypeEngine) -> None:
    py_type = Annotated[int, "a doc string"]
    assert engine.literal_type(py_type) == engine.literal_type(int)
    assert roundtrip(engine, 7, py_type) == 7


def test_literal_type_returns_a_copy(engine: TypeEngine) -> None:
    first = engine.literal_type(int)
    first.simple = pb.SIMPLE_TYPE_STRING
    assert engine.literal_type(int).simple == pb.SIMPLE_TYPE_INTEGER


def test_wrong_literal_kind_is_reported(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="string"):
        engine.to_python(pb.Literal(string="x"), int)


def test_numpy_like_integral_values_are_accepted(engine: TypeEngine) -> None:
    import numpy as np

    assert engine.to_literal(np.int64(5), int).integer == 5
    assert engine.to_literal(np.float32(1.5), float).float == 1.5
