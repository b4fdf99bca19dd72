"""`with pool("geo-api"):` — resource pools for calls a Python task makes itself.

A thin layer over the core's `taskfabric.hold()`: the block holds its slots through the engine
that runs the task (in its process, or through the engine's pool channel from a task process
of its own), so hand-written calls and `http` tasks share one quota across every engine. The
engine renews the lease while the block runs and releases it when the block ends, when the
attempt ends, or when the task process dies; `lease.pushback(seconds)` tells the pools that the
service throttled.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from taskfabric import HoldTimeout, PoolHold, TaskPools, task_pools
from taskfabric.config import Config
from taskfabric_http._errors import HttpError

__all__ = ["PoolLease", "PoolTimeout", "pool"]


class PoolTimeout(HttpError):
    """The pools were not granted within the timeout."""


@dataclass
class PoolLease:
    """A lease held by a `with pool(...)` block."""

    pools: tuple[str, ...]
    weight: int
    _hold: PoolHold

    def pushback(self, seconds: float) -> None:
        """The service throttled: its pools grant nothing new for `seconds`."""
        self._hold.pushback(seconds)

    def take_tokens(self) -> float:
        """Rate tokens for one more call in this block (its grant paid for the first): the
        seconds to wait before making it so that the pools' rates hold."""
        return self._hold.take_tokens()

    def pause_left(self) -> float:
        """Seconds a pushback in force in these pools still lasts (0: none)."""
        return self._hold.take_tokens(0)


@contextmanager
def pool(
    *names: str,
    weight: int = 1,
    timeout: float | None = None,
    config: Config | None = None,
    pools: TaskPools | None = None,
) -> Iterator[PoolLease]:
    """Hold `weight` slots of each named pool for the duration of the block, inside a task.

    Waits in the pools' queues (fairly, with every engine's attempts) until granted; raises
    PoolTimeout after `timeout` seconds, and taskfabric.HoldError for a pool the engine does not
    have, a weight it could never grant, or outside a running task. `config` is not used (the
    pools are those of the engine that runs the task); `pools`: the task's pools captured in
    its own thread (`taskfabric.task_pools()`), for a block in a thread the task started.
    """
    del config  # kept for callers of the former signature
    with ExitStack() as stack:
        held = pools if pools is not None else task_pools()
        try:
            hold = stack.enter_context(held.hold(*names, weight=weight, timeout=timeout))
        except HoldTimeout as exc:
            raise PoolTimeout(str(exc)) from None
        yield PoolLease(tuple(sorted(names)), weight, hold)
