"""A coarse guard on conversion overhead (the engine's budget is < 1 ms per task).

The limits are ~20x the times measured on a laptop so that slow CI machines pass; a failure
means something fell off the cached fast path (e.g. a transformer scan on every call).
"""

from __future__ import annotations

import timeit
from dataclasses import dataclass

from taskfabric.types import TypeEngine


@dataclass
class TenFields:
    a: int
    b: float
    c: str
    d: bool
    e: int
    f: float
    g: str
    h: bool
    i: int
    j: str


def per_call_us(fn: object, number: int = 2000) -> float:
    assert callable(fn)
    fn()
    return min(timeit.repeat(fn, number=number, repeat=3)) / number * 1e6


def test_simple_and_record_round_trips_are_fast() -> None:
    engine = TypeEngine.with_builtins()
    record = TenFields(1, 2.0, "c", True, 5, 6.0, "g", False, 9, "j")

    def int_round_trip() -> object:
        return engine.to_python(engine.to_literal(5, int), int)

    def record_round_trip() -> object:
        return engine.to_python(engine.to_literal(record, TenFields), TenFields)

    assert per_call_us(int_round_trip) < 20
    assert per_call_us(record_round_trip) < 400
    assert per_call_us(lambda: engine.literal_type(TenFields)) < 25
