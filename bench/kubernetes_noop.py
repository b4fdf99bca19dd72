"""The no-op workflows of bench_kubernetes.py, in a module of its own: the pods import it by
name from this folder (mounted read-only), and it imports nothing the task image lacks."""

from __future__ import annotations

from taskfabric import map_task, task, workflow


@task
def noop(x: int) -> int:
    return x


@task
def numbers(n: int) -> list[int]:
    return list(range(n))


@workflow
def one_noop(x: int = 1) -> int:
    return noop(x=x)


@workflow
def many_noops(n: int = 200) -> list[int]:
    return map_task(noop)(x=numbers(n=n))  # no concurrency limit: [engine] parallelism
