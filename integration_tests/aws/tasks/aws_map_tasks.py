"""The maps of the array-job tests: light tasks (no pandas to import), since many Batch
containers start them at once."""

from __future__ import annotations

import time

from taskfabric import map_task, task, workflow


@task
def square_unless_bad(i: int, bad: int) -> int:
    print(f"item {i} starts", flush=True)
    if i == bad:
        raise ValueError(f"item {i} is bad")
    return i * i


@workflow
def squares_but_one(numbers: list[int], bad: int = 7) -> list[int]:
    return map_task(square_unless_bad)(i=numbers, bad=bad)


@task
def hold_item(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


@workflow
def slow_items(numbers: list[int], seconds: float = 10.0) -> list[int]:
    return map_task(hold_item)(i=numbers, seconds=seconds)
