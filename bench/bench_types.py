"""Type-engine conversion cost: microseconds per round trip (Python value -> literal -> value).

    python bench/bench_types.py

The engine's budget is under 1 ms of overhead per task, conversions included; these figures
show how much of it conversions take. Best of 5 repeats of 20,000 calls.
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


def per_call_us(fn: object, number: int = 20_000) -> float:
    assert callable(fn)
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


def main() -> None:
    engine = TypeEngine.with_builtins()
    record = TenFields(1, 2.0, "c", True, 5, 6.0, "g", False, 9, "j")
    cases = {
        "int round trip": lambda: engine.to_python(engine.to_literal(5, int), int),
        "int | None round trip": lambda: engine.to_python(
            engine.to_literal(5, int | None), int | None
        ),
        "list[int] (10) round trip": lambda: engine.to_python(
            engine.to_literal(list(range(10)), list[int]), list[int]
        ),
        "10-field dataclass round trip": lambda: engine.to_python(
            engine.to_literal(record, TenFields), TenFields
        ),
        "literal_type(10-field dataclass)": lambda: engine.literal_type(TenFields),
    }
    base = per_call_us(cases["int round trip"])
    for name, fn in cases.items():
        us = per_call_us(fn)
        print(f"{name:<36} {us:8.2f} us  ({us / base:5.1f}x the int round trip)")


if __name__ == "__main__":
    main()
