"""The engine itself: registration, conflicts, overrides, caching and unsupported types."""

from __future__ import annotations

import collections.abc
import subprocess
import sys
import typing
from dataclasses import dataclass
from typing import Any

import pytest

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import (
    LiteralConversionError,
    TransformContext,
    TransformerConflictError,
    TypeEngine,
    TypeTransformer,
    UnsupportedTypeError,
    default_engine,
    type_str,
)


class Money:
    """A class the built-ins do not know; a plugin teaches the engine about it."""

    def __init__(self, cents: int) -> None:
        self.cents = cents

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Money) and other.cents == self.cents

    def __hash__(self) -> int:
        return hash(self.cents)


class MoneyTransformer(TypeTransformer[Money]):
    name = "money"
    python_types = (Money,)

    def get_literal_type(self, py_type: Any, engine: TypeEngine) -> pb.LiteralType:
        return pb.LiteralType(simple=pb.SIMPLE_TYPE_INTEGER)

    def to_literal(
        self, value: Any, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not isinstance(value, Money):
            raise LiteralConversionError("Money", type(value).__name__)
        return pb.Literal(integer=value.cents)

    def to_python(
        self, literal: pb.Literal, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> Money:
        return Money(literal.integer)


class OtherMoneyTransformer(MoneyTransformer):
    name = "other-money"

    def to_python(
        self, literal: pb.Literal, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> Money:
        return Money(literal.integer * 100)


def test_plugin_transformer_works_inside_containers(engine: TypeEngine) -> None:
    engine.register(MoneyTransformer())
    value = {"a": [Money(1), Money(2)]}
    literal = engine.to_literal(value, dict[str, list[Money]])
    assert engine.to_python(literal, dict[str, list[Money]]) == value


def test_second_transformer_for_same_type_is_an_error_naming_both(engine: TypeEngine) -> None:
    engine.register(MoneyTransformer())
    with pytest.raises(TransformerConflictError) as info:
        engine.register(OtherMoneyTransformer())
    message = str(info.value)
    assert "'money'" in message and "'other-money'" in message and "override=True" in message


def test_same_name_is_a_conflict(engine: TypeEngine) -> None:
    class Again(MoneyTransformer):
        python_types = ()

    engine.register(MoneyTransformer())
    with pytest.raises(TransformerConflictError, match="the name 'money'"):
        engine.register(Again())


def test_override_takes_precedence_and_clears_caches(engine: TypeEngine) -> None:
    engine.register(MoneyTransformer())
    literal = engine.to_literal(Money(3), Money)
    assert engine.to_python(literal, Money) == Money(3)
    engine.register(OtherMoneyTransformer(), override=True)
    assert engine.to_python(literal, Money) == Money(300)
    assert engine.transformer_for(Money).name == "other-money"
    engine.unregister("other-money")
    assert engine.transformer_for(Money).name == "money"


def test_override_of_a_family_for_one_class(engine: TypeEngine) -> None:
    @dataclass
    class Special:
        x: int

    class SpecialTransformer(MoneyTransformer):
        name = "special"
        python_types = (Special,)

        def to_literal(
            self, value: Any, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
        ) -> pb.Literal:
            return pb.Literal(integer=value.x)

        def to_python(
            self,
            literal: pb.Literal,
            py_type: Any,
            ctx: TransformContext | None,
            engine: TypeEngine,
        ) -> Any:
            return Special(literal.integer)

    with pytest.raises(TransformerConflictError, match="'dataclass'"):
        engine.register(SpecialTransformer())
    engine.register(SpecialTransformer(), override=True)
    assert type_str(engine.literal_type(Special)) == "int"
    assert engine.to_python(engine.to_literal(Special(4), Special), Special) == Special(4)


def test_declared_type_clashing_with_a_family_is_caught_at_registration(
    engine: TypeEngine,
) -> None:
    class Greedy(MoneyTransformer):
        name = "greedy"
        python_types = ()

        def matches(self, py_type: Any) -> bool:
            return py_type is Money

    engine.register(MoneyTransformer())
    with pytest.raises(
        TransformerConflictError, match="type `Money` is already handled by 'money'"
    ):
        engine.register(Greedy())


def test_ambiguous_families_are_reported_at_lookup(engine: TypeEngine) -> None:
    class Greedy(MoneyTransformer):
        name = "greedy"
        python_types = ()

        def matches(self, py_type: Any) -> bool:
            return py_type is Money

    class Greedier(Greedy):
        name = "greedier"

    engine.register(Greedy())
    engine.register(Greedier())  # neither declares types, so no load-time clash is visible
    with pytest.raises(TransformerConflictError, match="'greedy'.*'greedier'"):
        engine.literal_type(Money)


def test_register_rejects_non_transformers_and_nameless_ones(engine: TypeEngine) -> None:
    with pytest.raises(TypeError, match="not a TypeTransformer"):
        engine.register(object())  # type: ignore[arg-type]

    class Nameless(MoneyTransformer):
        name = ""

    with pytest.raises(TypeError, match="no `name`"):
        engine.register(Nameless())


def test_transformer_lookup_is_cached(engine: TypeEngine) -> None:
    first = engine.transformer_for(list[int])
    assert engine.transformer_for(list[int]) is first
    assert engine.transformer_for(int).name == "int"


def test_default_engine_is_built_once() -> None:
    assert default_engine() is default_engine()
    assert {"int", "dataclass", "File", "pandas.DataFrame"} <= {
        t.name for t in default_engine().transformers
    }


@pytest.mark.parametrize(
    ("py_type", "shown", "fix"),
    [
        (typing.Any, "typing.Any", "declare a concrete type"),
        (dict[int, str], "dict[int, str]", "map keys must be str: use dict[str, str]"),
        (dict, "`dict`", "dict[str, int]"),
        (list, "`list`", "list[int]"),
        (object, "object", "declare a concrete type"),
        (set[int], "set[int]", "use list[int]"),
        (frozenset[str], "frozenset[str]", "use list[str]"),
        (tuple[int, str], "tuple[int, str]", "@dataclass"),
        (tuple[int, ...], "tuple[int, ...]", "list[int]"),
        (Money, "Money", "@dataclass or a pydantic BaseModel"),
        (typing.Literal["a", "b"], "Literal['a', 'b']", "enum.Enum"),
        (collections.abc.Sequence[int], "Sequence[int]", "list[int]"),
        (dict[str, set[int]], "dict[str, set[int]]", "`set[int]`"),
        (list[typing.Any] | None, "list[typing.Any] | None", "typing.Any carries no type"),
    ],
)
def test_unsupported_types_explain_what_to_use(
    engine: TypeEngine, py_type: Any, shown: str, fix: str
) -> None:
    with pytest.raises(UnsupportedTypeError) as info:
        engine.literal_type(py_type)
    error = info.value
    assert error.py_type is py_type
    assert shown in str(error)
    assert fix in str(error)
    with pytest.raises(UnsupportedTypeError):
        engine.to_literal(None, py_type)


def test_unsupported_error_is_a_type_error_with_reason(engine: TypeEngine) -> None:
    with pytest.raises(TypeError) as info:
        engine.literal_type(dict[int, str])
    assert isinstance(info.value, UnsupportedTypeError)
    assert info.value.reason.startswith("map keys must be str")


def test_importing_the_package_loads_no_heavy_modules() -> None:
    code = (
        "import sys, taskfabric.types\n"
        "heavy = [m for m in ('pandas', 'pyarrow', 'pydantic', 'numpy') if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
