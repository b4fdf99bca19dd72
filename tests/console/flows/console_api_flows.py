"""Workflows of the console's API tests."""

import pandas as pd

from taskfabric import Directory, File, conditional, map_task, task, workflow

FACTOR = 2


@task
def items(n: int) -> list[int]:
    return list(range(n))


@task
def step(x: int) -> int:
    return x * FACTOR


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def fanout(n: int, label: str = "none") -> int:
    return total(xs=map_task(step)(x=items(n=n)))


@task
def count_lines(data: File) -> int:
    return len(data.read_text().splitlines())


@workflow
def lines(data: File) -> int:
    return count_lines(data=data)


@workflow
def inner(n: int) -> int:
    """A sub-workflow holding a map."""
    return total(xs=map_task(step)(x=items(n=n)))


@task
def big(x: int) -> str:
    return f"big {x}"


@task
def small(x: int) -> str:
    return f"small {x}"


@workflow
def nested(n: int) -> str:
    """A sub-workflow, then a branch on its result."""
    s = inner(n=n)
    return conditional("size").if_(s > 10).then(big(x=s)).else_().then(small(x=s))


@task(cache=True)
def table(n: int) -> tuple[File, pd.DataFrame]:
    """A CSV file and a dataframe of n rows (cached: a second run is a hit)."""
    out = File.new("rows.csv")
    with open(out.path, "w") as fh:
        fh.write("i,square\n")
        fh.writelines(f"{i},{i * i}\n" for i in range(n))
    return out, pd.DataFrame({"i": range(n), "square": [i * i for i in range(n)]})


@task
def sizes(files: list[File]) -> int:
    return len(files)


@workflow
def tables(n: int) -> tuple[File, pd.DataFrame, int]:
    csv_file, frame = table(n=n)
    return csv_file, frame, sizes(files=[csv_file])


@task
def shelves(n: int) -> Directory:
    """A folder of n files, one of them in a sub-folder."""
    out = Directory.new("stock room")
    (out.path / "shelf").mkdir()
    for i in range(n):
        where = out.path / ("shelf" if i == 0 else "") / f"item {i}.txt"
        where.write_text(f"{i}\n" * (i + 1))
    return out


@workflow
def stock(n: int) -> Directory:
    return shelves(n=n)
