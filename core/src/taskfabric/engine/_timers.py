"""Deadlines of the execution loop: retry backoffs, cache waits and attempt timeouts."""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable

from taskfabric.engine._state import NodeState

Due = Callable[[NodeState], None]


class Timers:
    """Calls `due(ns)` when a deadline passes, unless `ns` has moved on to another attempt
    since the timer was set (a retry's backoff does not fire into the attempt after it)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, NodeState, int, Due]] = []
        self._seq = itertools.count()

    def after(self, seconds: float, ns: NodeState, due: Due) -> None:
        heapq.heappush(
            self._heap, (time.monotonic() + seconds, next(self._seq), ns, ns.attempt, due)
        )

    def fire_due(self) -> None:
        now = time.monotonic()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, ns, attempt, due = heapq.heappop(heap)
            if attempt == ns.attempt:
                due(ns)

    def next_in(self) -> float | None:
        """Seconds until the next deadline (0 when one is past), None when there is none."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][0] - time.monotonic())

    def __bool__(self) -> bool:
        return bool(self._heap)
