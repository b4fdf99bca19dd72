"""Workflows of project "shop" that the console tests launch from the browser."""

import time
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import pandas as pd

from taskfabric import (
    Directory,
    File,
    FixedRate,
    LaunchPlan,
    conditional,
    hold,
    map_task,
    task,
    workflow,
)


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


@task
def durations(n: int, seconds: float) -> list[float]:
    return [seconds] * n


@workflow
def busy(n: int = 3, seconds: float = 600.0) -> list[float]:
    """More waits on the ledger pool than it has slots: the last waits in its queue."""
    return map_task(wait)(seconds=durations(n=n, seconds=seconds))


@task(cache=True)
def report(n: int) -> tuple[File, pd.DataFrame]:
    """A CSV file and a dataframe of n rows (cached: a second run is a hit)."""
    out = File.new("squares.csv")
    with open(out.path, "w") as fh:
        fh.write("i,square\n")
        fh.writelines(f"{i},{i * i}\n" for i in range(n))
    return out, pd.DataFrame({"i": range(n), "square": [i * i for i in range(n)]})


@workflow
def reports(n: int = 40) -> tuple[File, pd.DataFrame]:
    return report(n=n)


@task
def throttled(seconds: float) -> str:
    """Calls a service behind the ledger pool that answers 429 with Retry-After."""
    with hold("ledger") as lease:
        lease.pushback(seconds)
    return f"pushed back for {seconds} s"


@workflow
def throttle(seconds: float = 1.0) -> str:
    return throttled(seconds=seconds)


@task
def tally(folder: Directory) -> str:
    return ", ".join(
        f"{p.relative_to(folder.path).as_posix()}={p.read_text().strip()}" for p in folder.files()
    )


@workflow
def inventory(folder: Directory) -> str:
    """A directory input: the launch form uploads a folder, or several files."""
    return tally(folder=folder)


hourly = LaunchPlan(
    "hourly",
    checkout,
    fixed_inputs={"order": Order(item="tea", quantity=1), "size": Size.SMALL, "n": 2},
    schedule=FixedRate(timedelta(hours=1)),
)
