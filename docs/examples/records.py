# docs/examples/records.py
import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from taskfabric import task, workflow


class Split(enum.Enum):
    TRAIN = "train"
    TEST = "test"


@dataclass
class Window:
    start: datetime  # timezone-aware; read back in UTC
    length: timedelta


class Metrics(BaseModel):
    accuracy: float
    loss: float | None = None


@dataclass
class Run:
    model: str
    split: Split
    window: Window
    metrics: Metrics
    tags: dict[str, str] = field(default_factory=dict)


@task
def evaluate(model: str, split: Split, start: datetime, days: int) -> Run:
    return Run(
        model=model,
        split=split,
        window=Window(start=start, length=timedelta(days=days)),
        metrics=Metrics(accuracy=0.93),
        tags={"owner": "ml-team"},
    )


@task
def describe(run: Run) -> str:
    end = run.window.start + run.window.length
    loss = "n/a" if run.metrics.loss is None else f"{run.metrics.loss:.3f}"
    return (
        f"{run.model} on {run.split.name} until {end:%Y-%m-%d %H:%M %Z}: "
        f"accuracy {run.metrics.accuracy}, loss {loss}"
    )


@workflow
def report(
    model: str,
    split: Split = Split.TEST,
    start: datetime = datetime(2024, 5, 1, tzinfo=UTC),
    days: int = 7,
) -> str:
    return describe(run=evaluate(model=model, split=split, start=start, days=days))
