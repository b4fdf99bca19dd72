# docs/examples/subworkflows.py
from taskfabric import task, workflow


@task
def extract(source: str) -> list[float]:
    return [float(len(part)) for part in source.split(",")]


@task
def scale(values: list[float], factor: float) -> list[float]:
    return [v * factor for v in values]


@task
def mean(values: list[float]) -> float:
    return sum(values) / len(values)


@workflow
def prepare(source: str, factor: float = 1.0) -> list[float]:
    """Extract and scale one source: a workflow used as a step of others."""
    return scale(values=extract(source=source), factor=factor)


@workflow
def compare(left: str, right: str) -> tuple[float, float]:
    a = prepare(source=left)
    b = prepare(source=right, factor=0.5)
    return mean(values=a), mean(values=b)
