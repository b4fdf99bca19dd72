"""Containers, records, enums and unions, including property-based nested round trips."""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Optional, Union

import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import LiteralConversionError, TypeEngine, UnsupportedTypeError, type_str


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"
    BLUE = "b"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclass
class Point:
    x: float
    y: float


@dataclass
class Shape:
    name: str
    points: list[Point]
    color: Color | None = None
    meta: dict[str, int] = field(default_factory=dict)
    parent: Optional[Point] = None  # noqa: UP045 - typing.Optional spelled on purpose


class Model(pydantic.BaseModel):
    title: str
    tags: list[str] = []
    origin: Point | None = None
    when: datetime | None = None


class Outer(pydantic.BaseModel):
    inner: Model
    level: Level


# -- property-based nested round trips ------------------------------------------------------

SCALARS: list[tuple[Any, st.SearchStrategy[Any]]] = [
    (int, st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    (float, st.floats(allow_nan=False)),
    (str, st.text(max_size=10)),
    (bool, st.booleans()),
    (bytes, st.binary(max_size=10)),
    (
        datetime,
        st.datetimes(
            min_value=datetime(1, 1, 2),
            max_value=datetime(9999, 12, 30),
            timezones=st.just(timezone(timedelta(hours=5, minutes=30))),
        ),
    ),
    (timedelta, st.timedeltas(min_value=timedelta(days=-(10**6)), max_value=timedelta(days=10**6))),
    (Color, st.sampled_from(Color)),
    (Level, st.sampled_from(Level)),
    (type(None), st.none()),
]

_record_counter = iter(range(10**9))


def _record(children: list[tuple[Any, st.SearchStrategy[Any]]]) -> tuple[Any, Any]:
    names = [f"f{i}" for i in range(len(children))]
    cls = dataclasses.make_dataclass(
        f"Rec{next(_record_counter)}", [(n, t) for n, (t, _) in zip(names, children, strict=True)]
    )
    values = st.fixed_dictionaries({n: s for n, (_, s) in zip(names, children, strict=True)})
    return cls, values.map(lambda kw: cls(**kw))


def _extend(children: st.SearchStrategy[tuple[Any, Any]]) -> st.SearchStrategy[tuple[Any, Any]]:
    return st.one_of(
        children.map(lambda c: (list[c[0]], st.lists(c[1], max_size=4))),
        children.map(
            lambda c: (dict[str, c[0]], st.dictionaries(st.text(max_size=5), c[1], max_size=4))
        ),
        children.map(lambda c: (Optional[c[0]], st.none() | c[1])),  # noqa: UP045
        st.lists(children, min_size=1, max_size=4).map(_record),
    )


TYPED_VALUES = st.recursive(st.sampled_from(SCALARS), _extend, max_leaves=8)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(data=st.data())
def test_nested_values_round_trip(data: st.DataObject) -> None:
    py_type, values = data.draw(TYPED_VALUES)
    value = data.draw(values)
    engine = TypeEngine.with_builtins()
    literal = engine.to_literal(value, py_type)
    assert engine.to_python(literal, py_type) == value
    # The literal's shape agrees with the declared literal type.
    assert engine.literal_type(py_type).WhichOneof("type") is not None


# -- containers -------------------------------------------------------------------------------


def test_list_and_dict_literal_types(engine: TypeEngine) -> None:
    assert type_str(engine.literal_type(list[int])) == "list[int]"
    assert type_str(engine.literal_type(dict[str, float])) == "dict[str, float]"
    assert (
        type_str(engine.literal_type(dict[str, list[int | None]])) == "dict[str, list[int | None]]"
    )


def test_error_path_names_the_element(engine: TypeEngine) -> None:
    value = [Shape("a", []), Shape("b", [Point(1, 2), Point(1, "x")])]  # type: ignore[arg-type]
    with pytest.raises(LiteralConversionError) as info:
        engine.to_literal(value, list[Shape])
    error = info.value
    assert error.path == "[1].points[1].y"
    assert error.expected == "float"
    assert "str" in error.actual
    assert str(error.with_root("shapes")).startswith("at shapes[1].points[1].y: expected float")


def test_dict_error_path_and_non_str_key(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError) as info:
        engine.to_literal({"a": 1, "b": "two"}, dict[str, int])
    assert info.value.path == "['b']"
    with pytest.raises(LiteralConversionError, match="map keys must be str"):
        engine.to_literal({1: 1}, dict[str, int])


def test_tuple_is_not_a_list(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="tuple"):
        engine.to_literal((1, 2), list[int])


def test_dict_comes_back_with_sorted_keys(engine: TypeEngine) -> None:
    back = engine.to_python(engine.to_literal({"b": 1, "a": 2}, dict[str, int]), dict[str, int])
    assert list(back) == ["a", "b"]


# -- records ----------------------------------------------------------------------------------


def test_dataclass_round_trip_and_type(engine: TypeEngine) -> None:
    shape = Shape("tri", [Point(0, 0), Point(1, 0.5)], Color.RED, {"n": 3}, Point(9, 9))
    back = engine.to_python(engine.to_literal(shape, Shape), Shape)
    assert back == shape and type(back) is Shape
    assert type_str(engine.literal_type(Point)) == "Point{x: float, y: float}"
    lt = engine.literal_type(Shape)
    assert lt.record.name.endswith("test_types_structured.Shape")
    assert [f.name for f in lt.record.fields] == ["name", "points", "color", "meta", "parent"]


def test_missing_field_takes_default_and_missing_required_field_fails(engine: TypeEngine) -> None:
    literal = engine.to_literal(Shape("s", []), Shape)
    del literal.record.fields["meta"]
    assert engine.to_python(literal, Shape).meta == {}
    del literal.record.fields["name"]
    with pytest.raises(LiteralConversionError) as info:
        engine.to_python(literal, Shape)
    assert info.value.path == ".name"


def test_dataclass_subclass_value_is_accepted_as_base(engine: TypeEngine) -> None:
    @dataclass
    class Point3(Point):
        z: float = 0.0

    back = engine.to_python(engine.to_literal(Point3(1, 2, 3), Point), Point)
    assert back == Point(1, 2)


def test_frozen_dataclass_with_init_false_field(engine: TypeEngine) -> None:
    @dataclass(frozen=True)
    class Box:
        w: int
        area: int = field(init=False)

        def __post_init__(self) -> None:
            object.__setattr__(self, "area", self.w * self.w)

    back = engine.to_python(engine.to_literal(Box(3), Box), Box)
    assert back == Box(3) and back.area == 9


def test_pydantic_models_round_trip(engine: TypeEngine) -> None:
    value = Outer(
        inner=Model(
            title="t",
            tags=["a"],
            origin=Point(1, 2),
            when=datetime(2024, 1, 1, tzinfo=timezone.utc),  # noqa: UP017
        ),
        level=Level.HIGH,
    )
    literal = engine.to_literal(value, Outer)
    back = engine.to_python(literal, Outer)
    assert back == value and type(back.inner) is Model
    assert type_str(engine.literal_type(Model)).startswith("Model{title: str, tags: list[str]")


def test_pydantic_default_used_when_field_missing(engine: TypeEngine) -> None:
    literal = engine.to_literal(Model(title="x", tags=["q"]), Model)
    del literal.record.fields["tags"]
    assert engine.to_python(literal, Model).tags == []


def test_record_field_type_error_names_class_and_field(engine: TypeEngine) -> None:
    @dataclass
    class Bad:
        ok: int
        items: set[str]

    with pytest.raises(UnsupportedTypeError) as info:
        engine.literal_type(list[Bad])
    message = str(info.value)
    assert "`list[Bad]`" in message and "Bad.items" in message and "set[str]" in message
    assert "list[str]" in message  # the fix


def test_recursive_dataclass_is_rejected(engine: TypeEngine) -> None:
    with pytest.raises(UnsupportedTypeError, match="recursive"):
        engine.literal_type(Node)


@dataclass
class Node:
    value: int
    children: list[Node]


# -- enums ------------------------------------------------------------------------------------


def test_enum_stored_by_name(engine: TypeEngine) -> None:
    literal = engine.to_literal(Color.GREEN, Color)
    assert literal.enum.value == "GREEN"
    assert engine.to_python(literal, Color) is Color.GREEN
    assert type_str(engine.literal_type(Color)) == "Color(RED, GREEN, BLUE)"


def test_enum_rejects_plain_values_and_unknown_names(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="one of RED, GREEN, BLUE"):
        engine.to_literal("r", Color)
    with pytest.raises(LiteralConversionError, match="PURPLE"):
        engine.to_python(pb.Literal(enum=pb.EnumValue(value="PURPLE")), Color)


def test_flag_enum_is_unsupported(engine: TypeEngine) -> None:
    class Perm(enum.Flag):
        R = 1
        W = 2

    with pytest.raises(UnsupportedTypeError, match="list"):
        engine.literal_type(Perm)


# -- unions -----------------------------------------------------------------------------------


def test_union_picks_exact_type_first(engine: TypeEngine) -> None:
    py_type = float | int
    literal = engine.to_literal(3, py_type)
    assert type_str(literal.union.variant) == "int"
    assert engine.to_python(literal, py_type) == 3
    assert type(engine.to_python(literal, py_type)) is int


def test_union_falls_back_to_first_accepting_variant(engine: TypeEngine) -> None:
    py_type = str | float
    literal = engine.to_literal(3, py_type)  # int: no exact variant; float accepts it
    assert type_str(literal.union.variant) == "float"
    assert engine.to_python(literal, py_type) == 3.0


def test_bool_does_not_sneak_into_int_union(engine: TypeEngine) -> None:
    with pytest.raises(LiteralConversionError, match="bool"):
        engine.to_literal(True, int | str)
    assert type_str(engine.to_literal(True, int | bool).union.variant) == "bool"


def test_union_variant_order_is_kept(engine: TypeEngine) -> None:
    assert type_str(engine.literal_type(int | str)) == "int | str"
    assert type_str(engine.literal_type(str | int)) == "str | int"
    assert type_str(engine.literal_type(Union[str, None])) == "str | None"  # noqa: UP007


def test_bare_literal_is_read_into_a_union(engine: TypeEngine) -> None:
    """The compiler lets T flow into T | None; the union reads the bare literal."""
    assert engine.to_python(engine.to_literal(5, int), int | None) == 5
    assert engine.to_python(engine.to_literal(None, None), int | None) is None
    assert engine.to_python(engine.to_literal(Color.RED, Color), Color | int) is Color.RED


def test_union_literal_is_read_into_a_covering_type(engine: TypeEngine) -> None:
    literal = engine.to_literal(5, int | None)
    assert engine.to_python(literal, int) == 5


def make_record_class() -> type:
    @dataclass
    class A:
        x: int

    return A


def test_union_of_indistinguishable_variants_is_rejected(engine: TypeEngine) -> None:
    first, second = make_record_class(), make_record_class()  # same name, same fields
    assert first is not second
    with pytest.raises(UnsupportedTypeError, match="both stored as A"):
        engine.literal_type(first | second)
    from pathlib import Path

    from taskfabric.types import File

    with pytest.raises(UnsupportedTypeError, match="both stored as File"):
        engine.literal_type(File | Path)


@given(value=st.one_of(st.integers(-5, 5), st.text(max_size=3), st.none(), st.sampled_from(Color)))
def test_union_round_trip_property(value: object) -> None:
    engine = TypeEngine.with_builtins()
    py_type = int | str | Color | None
    back = engine.to_python(engine.to_literal(value, py_type), py_type)
    assert back == value and type(back) is type(value)


def test_float_inf_in_containers(engine: TypeEngine) -> None:
    value = {"a": [math.inf, -math.inf, 0.0]}
    assert (
        engine.to_python(engine.to_literal(value, dict[str, list[float]]), dict[str, list[float]])
        == value
    )


def test_guess_python_type_builds_records_and_enums(engine: TypeEngine) -> None:
    shape_type = engine.literal_type(Shape)
    guessed = engine.guess_python_type(shape_type)
    assert dataclasses.is_dataclass(guessed) and guessed.__name__ == "Shape"
    assert engine.guess_python_type(shape_type) is guessed  # same class each time
    assert engine.literal_type(guessed) == shape_type
    shape = Shape("tri", [Point(0, 0)], Color.BLUE, {"n": 1}, None)
    value = engine.to_python(engine.to_literal(shape, Shape), guessed)
    assert value.name == "tri" and value.points[0].x == 0 and value.color.name == "BLUE"
    assert value.meta == {"n": 1} and value.parent is None
    assert (
        engine.guess_python_type(engine.literal_type(dict[str, list[int | None]]))
        == dict[str, list[int | None]]
    )
