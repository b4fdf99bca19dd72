"""Rendering literals for people and as JSON; type_str."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import (
    File,
    TransformContext,
    TypeEngine,
    literal_to_display,
    literal_to_json,
    type_str,
)


@dataclass
class Point:
    x: float
    y: float


def test_scalars(engine: TypeEngine) -> None:
    show = literal_to_display
    assert show(engine.to_literal(42, int)) == "42"
    assert show(engine.to_literal(1.5, float)) == "1.5"
    assert show(engine.to_literal(math.inf, float)) == "inf"
    assert show(engine.to_literal('hi "you"', str)) == '"hi \\"you\\""'
    assert show(engine.to_literal(True, bool)) == "true"
    assert show(engine.to_literal(None, None)) == "null"
    assert show(engine.to_literal(b"\x00ab", bytes)) == "b'\\x00ab'"
    when = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert show(engine.to_literal(when, datetime)) == "2024-05-01T12:00:00Z"
    assert show(engine.to_literal(timedelta(hours=1, minutes=30), timedelta)) == "1h30m"
    assert show(engine.to_literal(timedelta(days=2, seconds=1.5), timedelta)) == "2d1.5s"
    assert show(engine.to_literal(timedelta(0), timedelta)) == "0s"
    assert show(engine.to_literal(timedelta(seconds=-90), timedelta)) == "-1m30s"


def test_structures_sorted_and_compact(engine: TypeEngine) -> None:
    value = {"b": [Point(1, 2)], "a": []}
    text = literal_to_display(engine.to_literal(value, dict[str, list[Point]]))
    assert text == '{"a": [], "b": [{"x": 1.0, "y": 2.0}]}'
    assert literal_to_display(engine.to_literal(3, int | None)) == "3"


def test_long_lists_maps_and_strings_are_truncated(engine: TypeEngine) -> None:
    text = literal_to_display(engine.to_literal(list(range(100)), list[int]), max_items=3)
    assert text == "[0, 1, 2, … +97 more]"
    mapping = {f"k{i:02d}": i for i in range(30)}
    text = literal_to_display(engine.to_literal(mapping, dict[str, int]), max_items=2)
    assert text == '{"k00": 0, "k01": 1, … +28 more}'
    text = literal_to_display(engine.to_literal("x" * 1000, str), max_chars=5)
    assert text == '"xxxxx…" (1000 chars)'
    text = literal_to_display(engine.to_literal(b"y" * 5000, bytes), max_chars=4)
    assert text == "b'yyyy…' (5.0 kB)"


def test_files_show_hash_size_and_uri(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"z" * 1234)
    literal = engine.to_literal(File(path), File["bin"], ctx)
    text = literal_to_display(literal)
    digest = literal.blob.content_hash[7:15]
    assert text == f"File[bin](sha256:{digest}…, 1.2 kB) {literal.blob.uri}"
    assert literal.blob.uri.startswith("file:///")


def test_dataframe_display() -> None:
    literal = pb.Literal(
        dataframe=pb.DataFrameValue(
            uri="file:///d/data.parquet",
            content_hash="sha256:" + "ab" * 32,
            type=pb.DataFrameType(format="parquet"),
        )
    )
    assert (
        literal_to_display(literal) == "DataFrame[parquet](sha256:abababab…) file:///d/data.parquet"
    )
    assert literal_to_json(literal)["kind"] == "dataframe"


def test_literal_to_json_is_plain_json(engine: TypeEngine) -> None:
    value = {
        "n": [1, 2],
        "f": [math.inf, -math.inf, math.nan, 0.5],
        "when": [datetime(2024, 1, 1, tzinfo=UTC)],
    }
    py_type = dict[str, list[int] | list[float] | list[datetime]]
    plain = literal_to_json(engine.to_literal(value, py_type))
    assert plain == {
        "f": ["inf", "-inf", "nan", 0.5],
        "n": [1, 2],
        "when": ["2024-01-01T00:00:00Z"],
    }
    json.dumps(plain, allow_nan=False)
    assert literal_to_json(engine.to_literal(b"hi", bytes)) == "base64:aGk="
    assert literal_to_json(engine.to_literal(timedelta(days=1, hours=2), timedelta)) == "P1DT2H"
    assert literal_to_json(engine.to_literal(Point(1, 2), Point)) == {"x": 1.0, "y": 2.0}


@pytest.mark.parametrize(
    ("py_type", "expected"),
    [
        (list[int], "list[int]"),
        (dict[str, float], "dict[str, float]"),
        (Point, "Point{x: float, y: float}"),
        (int | None, "int | None"),
        (File["csv"], "File[csv]"),
        (list[dict[str, Point | None]], "list[dict[str, Point{x: float, y: float} | None]]"),
    ],
)
def test_type_str(engine: TypeEngine, py_type: object, expected: str) -> None:
    assert type_str(engine.literal_type(py_type)) == expected
