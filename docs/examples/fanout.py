# docs/examples/fanout.py
from typing import NamedTuple

from taskfabric import map_task, task, workflow


class Fit(NamedTuple):
    learning_rate: float
    loss: float


@task
def grid(start: float, factor: float, steps: int) -> list[float]:
    """Learning rates start, start*factor, start*factor**2, ..."""
    return [start * factor**i for i in range(steps)]


@task
def train(learning_rate: float, epochs: int) -> Fit:
    # stand-in for a real training run: the loss is lowest near 0.01
    loss = abs(learning_rate - 0.01) * 100 + 1 / epochs
    return Fit(learning_rate, round(loss, 4))


@task
def best(rates: list[float], losses: list[float]) -> float:
    return min(zip(losses, rates, strict=True))[1]


@workflow
def sweep(epochs: int = 10, steps: int = 6) -> float:
    rates = grid(start=0.0001, factor=10.0, steps=steps)
    # `learning_rate` gets one element per run; `epochs` goes to every run
    fits = map_task(train, concurrency=3)(learning_rate=rates, epochs=epochs)
    return best(rates=fits.learning_rate, losses=fits.loss)
