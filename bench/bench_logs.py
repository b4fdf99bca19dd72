"""What a log call below the configured level costs, against calling an empty function.

    python bench/bench_logs.py

``taskfabric.logs`` promises that a filtered call (``log.debug`` at level info) costs about
as much as calling an empty function, so the engine can log freely at debug level in its hot
loop. Best of 5 repeats of 200,000 calls; the ratio is what to compare between machines.
"""

from __future__ import annotations

import io
import timeit

from taskfabric.logs import configure_logging, get_logger


def empty(event: str, **fields: object) -> None:
    return None


def per_call_ns(fn: object, number: int = 200_000) -> float:
    assert callable(fn)
    fn()
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e9


def main() -> None:
    configure_logging(level="info", stream=io.StringIO())
    log = get_logger("bench")
    base = per_call_ns(lambda: empty("never", value=1))
    cases = {
        "empty function": lambda: empty("never", value=1),
        "log.debug at level info": lambda: log.debug("never", value=1),
        "log.debug, three fields": lambda: log.debug("never", a=1, b="two", c=3.0),
    }
    for name, fn in cases.items():
        ns = per_call_ns(fn)
        print(f"{name:<28} {ns:8.0f} ns  ({ns / base:4.1f}x the empty function)")


if __name__ == "__main__":
    main()
