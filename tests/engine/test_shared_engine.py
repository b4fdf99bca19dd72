"""Calling a workflow (`wf(...)`) runs it on one engine per process: later calls reuse its
database connections and backend threads; another config replaces it; it closes at exit."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from taskfabric import task, workflow
from taskfabric.engine import shared_engine


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def twice(x: int) -> int:
    return double(x=double(x=x))


@workflow
def inner(x: int) -> int:
    return double(x=x)


@task
def calls_a_workflow(x: int) -> int:
    return inner(x=x) + 1  # a `wf(...)` inside a task: while the outer run holds the engine


@workflow
def outer(x: int) -> int:
    return calls_a_workflow(x=x)


def _local_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("taskfabric-local-")}


def test_calls_reuse_the_engine_its_connections_and_threads() -> None:
    assert twice(x=1) == 4
    with shared_engine.use() as first:
        metadata, threads = first.metadata, _local_threads()
    assert threads, "the local backend's worker threads run after the first call"
    assert twice(x=2) == 8
    assert twice(x=3) == 12
    with shared_engine.use() as again:
        assert again is first and again.metadata is metadata
    assert threads <= _local_threads(), "the first call's worker threads serve the next ones"
    assert len(first.metadata.list_executions(limit=10)) == 3


def test_another_config_replaces_the_engine_and_closes_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert twice(x=1) == 4
    with shared_engine.use() as first:
        old_threads = _local_threads()
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "elsewhere"))
    assert twice(x=1) == 4
    with shared_engine.use() as second:
        assert second is not first and second.config.data_root == tmp_path / "elsewhere"
    for thread in old_threads:  # closing the old engine stopped its backend's workers
        thread.join(timeout=30)
        assert not thread.is_alive()
    assert len(second.metadata.list_executions(limit=10)) == 1


def test_a_workflow_called_inside_a_task_gets_an_engine_of_its_own() -> None:
    assert outer(x=5) == 11
    with shared_engine.use() as engine:
        names = sorted(e.workflow_name for e in engine.metadata.list_executions(limit=10))
    assert [n.rsplit(".", 1)[-1] for n in names] == ["inner", "outer"]


def test_the_engine_is_closed_at_exit(tmp_path: Path) -> None:
    script = tmp_path / "calls.py"
    script.write_text(
        textwrap.dedent(
            """
            from taskfabric import task, workflow
            from taskfabric.engine import Engine

            closed = Engine.close

            def close(self):
                closed(self)
                print("engine closed", flush=True)

            Engine.close = close

            @task
            def inc(x: int) -> int:
                return x + 1

            @workflow
            def wf(x: int) -> int:
                return inc(x=x)

            print(wf(x=1), wf(x=2), flush=True)
            """
        )
    )
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["2 3", "engine closed"]
