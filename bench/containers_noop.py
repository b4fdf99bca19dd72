"""The no-op workflow of bench_containers.py, in a module of its own: the containers import it
by name from a snapshot of this folder, and it imports nothing the task image lacks."""

from __future__ import annotations

from taskfabric import task, workflow


@task
def noop(x: int) -> int:
    return x


@workflow
def one_noop(x: int = 1) -> int:
    return noop(x=x)
