"""Parsing command-line strings into typed values."""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfabric.types import (
    Directory,
    File,
    TypeEngine,
    literal_to_json,
    parse_cli_value,
)


class Mode(enum.Enum):
    FAST = "fast"
    SAFE = 2


@dataclass
class Point:
    x: float
    y: float = 0.0


@dataclass
class Job:
    name: str
    points: list[Point]
    when: datetime | None = None
    every: timedelta = timedelta(hours=1)
    mode: Mode = Mode.FAST
    tags: dict[str, int] = field(default_factory=dict)


class Settings(pydantic.BaseModel):
    name: str
    retries: int = 3
    origin: Point | None = None


@pytest.mark.parametrize(
    ("text", "py_type", "expected"),
    [
        ("42", int, 42),
        (" -7 ", int, -7),
        ("1_000", int, 1000),
        ("3.5", float, 3.5),
        ("1e3", float, 1000.0),
        ("inf", float, float("inf")),
        ("4", float, 4.0),
        ("hello world", str, "hello world"),
        ("", str, ""),
        ("true", bool, True),
        ("YES", bool, True),
        ("1", bool, True),
        ("False", bool, False),
        ("no", bool, False),
        ("0", bool, False),
        ("héllo", bytes, "héllo".encode()),
        ("base64:aGVsbG8=", bytes, b"hello"),
        ("2024-05-01T12:00:00Z", datetime, datetime(2024, 5, 1, 12, tzinfo=UTC)),
        (
            "2024-05-01T14:00:00+02:00",
            datetime,
            datetime(2024, 5, 1, 14, tzinfo=timezone(timedelta(hours=2))),
        ),
        ("90s", timedelta, timedelta(seconds=90)),
        ("1h30m", timedelta, timedelta(hours=1, minutes=30)),
        ("2d", timedelta, timedelta(days=2)),
        ("1.5h", timedelta, timedelta(hours=1.5)),
        ("500ms", timedelta, timedelta(milliseconds=500)),
        ("1d 2h", timedelta, timedelta(days=1, hours=2)),
        ("PT1H30M", timedelta, timedelta(hours=1, minutes=30)),
        ("P1DT2S", timedelta, timedelta(days=1, seconds=2)),
        ("P2W", timedelta, timedelta(weeks=2)),
        ("-PT1.5S", timedelta, timedelta(seconds=-1.5)),
        ("5400", timedelta, timedelta(seconds=5400)),
        ("2.5", timedelta, timedelta(seconds=2.5)),
        ("-90s", timedelta, timedelta(seconds=-90)),
        ("FAST", Mode, Mode.FAST),
        ("fast", Mode, Mode.FAST),
        ("2", Mode, Mode.SAFE),
        ("safe", Mode, Mode.SAFE),
        ("none", int | None, None),
        ("NULL", Optional[str], None),  # noqa: UP045
        ("5", int | None, 5),
        ("5", int | str, 5),
        ("5", str | int, "5"),
        ("five", int | str, "five"),
        ("null", type(None), None),
        ("[1, 2, 3]", list[int], [1, 2, 3]),
        ('{"a": 1.5, "b": 2}', dict[str, float], {"a": 1.5, "b": 2.0}),
        ("[[1, null], []]", list[list[int | None]], [[1, None], []]),
        ('["2024-01-01T00:00:00Z"]', list[datetime], [datetime(2024, 1, 1, tzinfo=UTC)]),
        ('{"x": 1}', Point, Point(1.0, 0.0)),
        (
            '{"name": "j", "points": [{"x": 1, "y": 2}], "when": "2024-01-01T00:00:00Z",'
            ' "every": "90s", "mode": "SAFE", "tags": {"a": 1}}',
            Job,
            Job(
                "j",
                [Point(1, 2)],
                datetime(2024, 1, 1, tzinfo=UTC),
                timedelta(seconds=90),
                Mode.SAFE,
                {"a": 1},
            ),
        ),
        ('{"name": "s", "origin": {"x": 3}}', Settings, Settings(name="s", origin=Point(3))),
        ('{"data": "base64:AAE="}', dict[str, bytes], {"data": b"\x00\x01"}),
        ('["inf", "-inf"]', list[float], [float("inf"), float("-inf")]),
    ],
)
def test_valid_values(text: str, py_type: Any, expected: Any) -> None:
    value = parse_cli_value(text, py_type)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "py_type", "fragments"),
    [
        ("3.5", int, ["int", "not an integer", "e.g. 42"]),
        ("abc", float, ["float", "e.g. 3.14"]),
        ("maybe", bool, ["bool", "true"]),
        ("2024-05-01T12:00:00", datetime, ["add `Z`", "offset"]),
        ("yesterday", datetime, ["ISO 8601", "2024-05-01T12:00:00Z"]),
        ("1 hour", timedelta, ["not a duration", "1h30m", "PT1H30M"]),
        ("P", timedelta, ["not a duration"]),
        ("base64:@@@", bytes, ["base64"]),
        ("PURPLE", Mode, ["Mode", "FAST or SAFE"]),
        ("[1, 2", list[int], ["not valid JSON", "e.g. [1]"]),
        ('[1, "x"]', list[int], ["at [1]", "expected int"]),
        ('{"x": "a"}', Point, ["at .x", "expected float"]),
        ('{"y": 1}', Point, ["missing field 'x'"]),
        ('{"x": 1, "z": 2}', Point, ["no field 'z'"]),
        ("[1]", Point, ["JSON object", 'e.g. {"x": 1.5, "y": 1.5}']),
        ('{"name": 3}', Settings, ["expected str"]),
        ("x", int | None, ["int | None", "not int", "e.g. 42 or none"]),
        ("/no/such/file.csv", File, ["no such file", "path/to/existing/file"]),
        ("/no/such/dir", Directory, ["no such folder"]),
        ("none", int, ["not an integer"]),
    ],
)
def test_invalid_values_say_type_and_example(text: str, py_type: Any, fragments: list[str]) -> None:
    with pytest.raises(ValueError) as info:
        parse_cli_value(text, py_type)
    message = str(info.value)
    assert repr(text) in message
    for fragment in fragments:
        assert fragment in message


def test_paths_must_exist(tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("a\n1\n")
    value = parse_cli_value(str(data), File)
    assert isinstance(value, File) and value.path == data
    assert parse_cli_value(str(data), Path) == data
    folder = parse_cli_value(str(tmp_path), Directory)
    assert isinstance(folder, Directory) and folder.path == tmp_path
    with pytest.raises(ValueError, match="not a file"):
        parse_cli_value(str(tmp_path), File)
    with pytest.raises(ValueError, match="not a folder"):
        parse_cli_value(str(data), Directory)


def test_dataframe_from_csv_and_parquet(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    frame.to_csv(tmp_path / "f.csv", index=False)
    frame.to_parquet(tmp_path / "f.parquet")
    pd.testing.assert_frame_equal(
        parse_cli_value(str(tmp_path / "f.csv"), pd.DataFrame), frame, check_dtype=False
    )
    pd.testing.assert_frame_equal(parse_cli_value(str(tmp_path / "f.parquet"), pd.DataFrame), frame)
    (tmp_path / "f.txt").write_text("")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        parse_cli_value(str(tmp_path / "f.txt"), pd.DataFrame)


JSON_TYPES: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (list[int], st.lists(st.integers(-(2**63), 2**63 - 1), max_size=4)),
    (
        dict[str, float],
        st.dictionaries(st.text(max_size=4), st.floats(allow_nan=False), max_size=3),
    ),
    (list[bytes], st.lists(st.binary(max_size=6), max_size=3)),
    (
        list[timedelta],
        st.lists(
            st.timedeltas(min_value=timedelta(days=-999), max_value=timedelta(days=999)), max_size=3
        ),
    ),
    (
        Job,
        st.builds(
            Job,
            name=st.text(max_size=5),
            points=st.lists(
                st.builds(Point, st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)), max_size=2
            ),
            when=st.none()
            | st.datetimes(
                min_value=datetime(1900, 1, 1),
                max_value=datetime(2200, 1, 1),
                timezones=st.just(UTC),
            ),
            every=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=30)),
            mode=st.sampled_from(Mode),
            tags=st.dictionaries(st.text(max_size=3), st.integers(-5, 5), max_size=2),
        ),
    ),
]


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_literal_to_json_output_parses_back(data: st.DataObject) -> None:
    """What `executions show --json` prints can be passed back on the command line."""
    py_type, values = data.draw(st.sampled_from(JSON_TYPES))
    value = data.draw(values)
    engine = TypeEngine.with_builtins()
    text = json.dumps(literal_to_json(engine.to_literal(value, py_type)))
    assert parse_cli_value(text, py_type) == value


@settings(max_examples=60)
@given(st.timedeltas(min_value=timedelta(days=-(10**5)), max_value=timedelta(days=10**5)))
def test_duration_json_form_parses_back(value: timedelta) -> None:
    engine = TypeEngine.with_builtins()
    text = literal_to_json(engine.to_literal(value, timedelta))
    assert parse_cli_value(text, timedelta) == value


def test_dataclass_fields_are_known() -> None:
    assert [f.name for f in dataclasses.fields(Job)][:2] == ["name", "points"]
