"""Workflows of project "shop" that the console tests launch from the browser."""

import time
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

from taskfabric import File, FixedRate, LaunchPlan, conditional, map_task, task, workflow


class Size(Enum):
    SMALL = "small"
    LARGE = "large"


@dataclass
class Order:
    item: str
    quantity: int


@task
def price(order: Order, size: Size, discount: float) -> float:
    print(f"pricing {order.quantity} x {order.item} ({size.name})", flush=True)
    if order.quantity < 0:
        raise ValueError(f"quantity must not be negative, got {order.quantity}")
    unit = 3.0 if size is Size.LARGE else 2.0
    return order.quantity * unit * (1 - discount)


@task
def items(n: int) -> list[int]:
    return list(range(n))


@task
def double(x: int) -> int:
    print(f"doubling {x}", flush=True)
    return 2 * x


@task
def total(xs: list[int], label: str) -> str:
    return f"{label}: {sum(xs)}"


@workflow
def checkout(order: Order, size: Size, n: int, label: str = "total", discount: float = 0.0) -> str:
    """A typed workflow: a record, an enum, an int, defaults; a map of n items."""
    cost = price(order=order, size=size, discount=discount)
    summed = total(xs=map_task(double)(x=items(n=n)), label=label)
    return join(a=summed, b=cost)


@task
def join(a: str, b: float) -> str:
    return f"{a}, cost {b:g}"


@task(pools={"ledger": 1})
def wait(seconds: float) -> float:
    print(f"waiting {seconds} s", flush=True)
    time.sleep(seconds)
    return seconds


@workflow
def slow(seconds: float = 600.0) -> float:
    """Runs until cancelled (the cancel test)."""
    return wait(seconds=seconds)


@task
def count_lines(data: File) -> int:
    return len(data.read_text().splitlines())


@workflow
def lines(data: File) -> int:
    """A file input: the launch form uploads it."""
    return count_lines(data=data)


@task
def weigh(order: Order) -> int:
    return order.quantity * 250


@task
def heaviest(xs: list[int], base: int) -> int:
    return base + max(xs, default=0)


@workflow
def pack(order: Order, n: int) -> int:
    """A sub-workflow: the order's weight and its n boxes (a map)."""
    return heaviest(xs=map_task(double)(x=items(n=n)), base=weigh(order=order))


@task
def courier(weight: int) -> str:
    return f"courier, {weight} g"


@task
def post(weight: int) -> str:
    return f"post, {weight} g"


@workflow
def ship(order: Order, n: int = 2) -> str:
    """A sub-workflow, then a branch on its result: the DAG's expandable nodes."""
    weight = pack(order=order, n=n)
    return (
        conditional("carrier")
        .if_(weight > 1000)
        .then(courier(weight=weight))
        .else_()
        .then(post(weight=weight))
    )


hourly = LaunchPlan(
    "hourly",
    checkout,
    fixed_inputs={"order": Order(item="tea", quantity=1), "size": Size.SMALL, "n": 2},
    schedule=FixedRate(timedelta(hours=1)),
)
