# docs/examples/hello.py
from taskfabric import map_task, task, workflow


@task(retries=2)
def numbers(n: int) -> list[int]:
    """The numbers 0 .. n-1."""
    return list(range(n))


@task
def square(x: int) -> int:
    return x * x


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def sum_of_squares(n: int = 10) -> int:
    """Sum of the squares of 0 .. n-1."""
    squares = map_task(square, concurrency=4)(x=numbers(n=n))
    return total(xs=squares)
