"""Castability between literal types (used by the workflow compiler for every binding)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import pandas as pd
import pytest

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import Columns, Directory, File, TypeEngine, is_castable


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Rgb(enum.Enum):
    RED = 1
    GREEN = 2
    BLUE = 3


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Coord:  # same structure, another class name
    x: float
    y: float


@dataclass
class Point3:
    x: float
    y: float
    z: float


@dataclass
class IntPoint:
    x: int
    y: int


@dataclass
class Wrapper:
    c: Color


@dataclass
class WideWrapper:
    c: Rgb


Frame = pd.DataFrame
AB = Annotated[pd.DataFrame, Columns(a=int, b=str)]
A = Annotated[pd.DataFrame, Columns(a=int)]
AFloat = Annotated[pd.DataFrame, Columns(a=float)]
C = Annotated[pd.DataFrame, Columns(c=int)]

CASES: list[tuple[Any, Any, bool]] = [
    # identical and simple
    (int, int, True),
    (str, str, True),
    (datetime, datetime, True),
    (timedelta, timedelta, True),
    (int, float, False),  # no numeric widening
    (float, int, False),
    (bool, int, False),
    (int, str, False),
    # none and unions
    (None, int | None, True),
    (None, int, False),
    (int, int | None, True),
    (int, str | int, True),
    (int, float | None, False),
    (int | None, int | str | None, True),
    (int | str, str | int, True),
    (int | None, int, False),
    (int | str, int, False),
    (int | str, str | None, False),
    # containers
    (list[int], list[int], True),
    (list[int], list[float], False),
    (list[int], list[int | None], True),
    (dict[str, int], dict[str, int | None], True),
    (dict[str, int], list[int], False),
    (list[list[None]], list[list[int | None]], True),
    # records
    (Point, Coord, True),
    (Point, Point3, False),
    (IntPoint, Point, False),
    (list[Point], list[Coord], True),
    (Wrapper, WideWrapper, True),
    (WideWrapper, Wrapper, False),
    # enums
    (Color, Rgb, True),
    (Rgb, Color, False),
    (Color, str, False),
    # blobs
    (File, File, True),
    (File["csv"], File["csv"], True),
    (File["csv"], File, True),
    (File, File["csv"], True),
    (File["csv"], File["parquet"], False),
    (File, Directory, False),
    (Directory["img"], Directory, True),
    # dataframes
    (Frame, AB, True),  # the source declares nothing: allowed
    (AB, Frame, True),
    (AB, A, True),
    (A, AB, False),
    (AB, AFloat, False),
    (AB, C, False),
    (A, A, True),
]


@pytest.mark.parametrize(("source", "target", "expected"), CASES)
def test_castability_table(engine: TypeEngine, source: Any, target: Any, expected: bool) -> None:
    assert is_castable(engine.literal_type(source), engine.literal_type(target)) is expected


def test_dataframe_and_blob_formats() -> None:
    def frame(fmt: str) -> pb.LiteralType:
        return pb.LiteralType(dataframe=pb.DataFrameType(format=fmt))

    assert is_castable(frame(""), frame("parquet"))
    assert is_castable(frame("parquet"), frame(""))
    assert not is_castable(frame("csv"), frame("parquet"))


def test_unset_types_are_not_castable() -> None:
    assert not is_castable(pb.LiteralType(), pb.LiteralType(simple=pb.SIMPLE_TYPE_INTEGER))


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (Point(1, 2), Point, Coord, Coord(1, 2)),
        (Color.GREEN, Color, Rgb, Rgb.GREEN),
        (None, None, int | None, None),
        (3, int, str | int, 3),
        (3, int | None, int | str | None, 3),
        ([Point(0, 1)], list[Point], list[Coord] | None, [Coord(0, 1)]),
        (Wrapper(Color.RED), Wrapper | None, WideWrapper | None, WideWrapper(Rgb.RED)),
    ],
)
def test_castable_values_read_as_the_target_type(
    engine: TypeEngine, value: Any, source: Any, target: Any, expected: Any
) -> None:
    assert is_castable(engine.literal_type(source), engine.literal_type(target))
    literal = engine.to_literal(value, source)
    assert engine.to_python(literal, target) == expected
