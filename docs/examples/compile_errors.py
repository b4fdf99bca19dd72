# docs/examples/compile_errors.py
from taskfabric import task, workflow


@task
def count(words: list[str]) -> int:
    return len(words)


@task
def share(part: float, whole: float) -> float:
    return part / whole


@workflow
def broken(words: list[str], total: float) -> float:
    n = count(words=words)
    return share(part=n, totl=total)  # two mistakes on this line


@task
def as_float(n: int) -> float:
    return float(n)


@workflow
def fixed(words: list[str], total: float) -> float:
    n = count(words=words)
    return share(part=as_float(n=n), whole=total)
