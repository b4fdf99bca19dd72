"""JSON values and command-line text to literals by literal type alone (no code)."""

from __future__ import annotations

import dataclasses
import enum
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from taskfabric.server import InputError, json_to_literal, text_to_literal
from taskfabric.server._inputs import literal_type_from_json, literal_type_json
from taskfabric.types import default_engine, literal_to_json


class Color(enum.Enum):
    RED = "r"
    BLUE = "b"


@dataclasses.dataclass
class Point:
    x: int
    tags: list[str]
    color: Color
    at: datetime | None = None


CASES: list[tuple[Any, Any]] = [
    (3, int),
    (-(2**63), int),
    (2.5, float),
    (float("inf"), float),
    ("text", str),
    (True, bool),
    (b"\x00\xffab", bytes),
    (datetime(2026, 11, 27, 1, 2, 3, 456, tzinfo=UTC), datetime),
    (timedelta(hours=1, microseconds=7), timedelta),
    (Color.BLUE, Color),
    ([1, 2, 3], list[int]),
    ({"a": [1.5], "b": []}, dict[str, list[float]]),
    (None, int | None),
    (4, int | None),
    ("4", int | str),
    (Point(1, ["a"], Color.RED, datetime(2026, 1, 1, tzinfo=UTC)), Point),
    ({"p": [Point(2, [], Color.BLUE)]}, dict[str, list[Point]]),
]


@pytest.mark.parametrize(("value", "py_type"), CASES, ids=lambda v: repr(v)[:30])
def test_outputs_read_back_as_inputs(value: Any, py_type: Any) -> None:
    """literal_to_json, then json_to_literal by the literal type only: the same literal."""
    engine = default_engine()
    literal_type = engine.literal_type(py_type)
    literal = engine.to_literal(value, py_type)
    over_the_wire = literal_type_from_json(literal_type_json(literal_type))
    assert json_to_literal(literal_to_json(literal), over_the_wire, name="i") == literal


@pytest.mark.parametrize(
    ("value", "py_type", "message"),
    [
        ("3", int, "input 'i': expected an integer, got string '3' (the input is int)"),
        (True, int, "input 'i': expected an integer, got boolean true"),
        (3, str, "input 'i': expected a string, got number 3"),
        ([1, "a"], list[int], "input 'i': at [1]: expected an integer, got string 'a'"),
        ({"x": 1, "tags": [], "color": "GREEN", "at": None}, Point, "at .color: invalid value"),
        ({"x": 1}, Point, "input 'i': missing field 'tags'"),
        ({"x": 1, "y": 2}, Point, "no field 'y'"),
        ("2026-01-01", datetime, "no timezone"),
        (2**70, int, "outside the signed 64-bit range"),
        ([1], dict[str, int], "expected an object, got an array"),
    ],
)
def test_values_that_do_not_fit_name_the_input_and_the_place(
    value: Any, py_type: Any, message: str
) -> None:
    with pytest.raises(InputError) as caught:
        json_to_literal(value, default_engine().literal_type(py_type), name="i")
    assert message in str(caught.value) and caught.value.input == "i"


def test_command_line_text_needs_a_store_for_files() -> None:
    from taskfabric.types import File

    assert text_to_literal("7", default_engine().literal_type(int), name="n").integer == 7
    with pytest.raises(InputError, match="are uploaded, not converted here"):
        text_to_literal("/etc/hosts", default_engine().literal_type(File), name="f")
    with pytest.raises(InputError, match='expected {"upload": REF}, got an object'):
        json_to_literal({"uri": "file:///etc/hosts"}, default_engine().literal_type(File))
