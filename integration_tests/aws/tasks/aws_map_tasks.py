"""The map of the array-job tests: a light task (no pandas to import), since twenty Batch
containers start it at once."""

from __future__ import annotations

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
