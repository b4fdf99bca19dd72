"""The sandbox's bounds on an attempt (issue 21): a fork bomb, a memory hog, a disk filler and a
CPU spinner each fail with an error that names the limit reached and how to raise it, and the
engine (with its fork server) then runs the next attempt as before. The bounds come from the
backend's settings, or from the task's own `limits`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric.backends._limits import LimitError, limits_of
from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.sdk import Resources, task, workflow
from taskfabric.testing._harness import config_text, launch


@task
def fork_bomb() -> int:
    children = []
    for _ in range(200):
        pid = os.fork()
        if pid == 0:  # waits to be killed with its attempt's pid namespace
            time.sleep(600)
            os._exit(0)
        children.append(pid)
    return len(children)


@task
def memory_hog() -> int:
    held = [bytearray(64 * 2**20) for _ in range(32)]  # 2 GiB
    return len(held)


@task(limits=Resources(memory="300Mi"))
def own_memory_hog() -> int:
    held = [bytearray(64 * 2**20) for _ in range(32)]
    return len(held)


@task
def disk_filler() -> int:
    with open("filler.bin", "wb") as out:  # in the attempt's scratch folder
        for _ in range(64):
            out.write(b"\0" * 2**20)
    return 64


@task
def tmp_filler() -> int:
    for i in range(64):  # many files, each under the largest size a file may have
        Path(f"/tmp/part-{i}").write_bytes(b"\0" * 2**20)
    return 64


@task
def spinner() -> int:
    n = 0
    while True:
        n += 1


@task
def fine(x: int) -> int:
    return x + 1


def _wf(t: Any) -> Any:
    @workflow
    def wf() -> int:
        out: int = t()
        return out

    wf.name = f"limits_{t.name}"
    return wf


@workflow
def fine_wf(x: int) -> int:
    return fine(x=x)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    tmp = tmp_path_factory.mktemp("limits")
    backend = {
        "driver": "sandbox",
        "memory": "200Mi",
        "processes": 16,
        "disk": "8Mi",
        "cpu_seconds": 1,
    }
    path = tmp / "taskfabric.toml"
    path.write_text(
        config_text(data_root=tmp / "data", backend=backend, task_type="python", parallelism=2)
    )
    with use_plugins(Plugins(autoload=False)):
        found = Engine(load_config(path))
        yield found
        found.close()


def _error(engine: Engine, t: Any) -> dict[str, Any]:
    result = launch(engine, _wf(t), {}, task_type="python", deadline=300)
    assert result.phase == "FAILED", result
    assert result.error is not None
    error: dict[str, Any] = dict(result.error)
    return error


def test_a_fork_bomb_reaches_the_process_limit(engine: Engine) -> None:
    error = _error(engine, fork_bomb)
    assert error["code"] == "ProcessLimit", error
    assert error["message"].startswith(
        "the task reached its limit of 16 processes and threads at once; "
        "[backends.conformance] processes: raise it there"
    ), error


def test_a_memory_hog_reaches_the_memory_limit(engine: Engine) -> None:
    error = _error(engine, memory_hog)
    assert error["code"] == "MemoryLimit", error
    assert error["message"].startswith(
        "the task reached its memory limit, 200 MiB per process; [backends.conformance] "
        "memory: raise it there, or give the task its own with "
        "@task(limits=Resources(memory=...))"
    ), error


def test_a_tasks_own_memory_limit_wins(engine: Engine) -> None:
    error = _error(engine, own_memory_hog)
    assert error["code"] == "MemoryLimit", error
    assert "300 MiB per process; the task's limits memory='300Mi'" in error["message"], error


@pytest.mark.parametrize("filler", [disk_filler, tmp_filler])
def test_a_disk_filler_reaches_the_disk_limit(engine: Engine, filler: Any) -> None:
    """One file over the limit (in its scratch folder), or many under it (in /tmp)."""
    error = _error(engine, filler)
    assert error["code"] == "DiskLimit", error
    assert error["message"].startswith("the task reached its disk limit, 8 MiB"), error
    assert "[backends.conformance] disk: raise it there" in error["message"], error


def test_a_spinner_reaches_the_cpu_time_limit(engine: Engine) -> None:
    error = _error(engine, spinner)
    assert error["code"] == "CpuTimeLimit", error
    assert error["message"].startswith(
        "the task used its 1 s of CPU time (per process); [backends.conformance] "
        "cpu_seconds: raise it there"
    ), error


def test_the_engine_and_its_fork_server_go_on_after_them(engine: Engine) -> None:
    after = launch(engine, fine_wf, {"x": 1}, task_type="python", deadline=300)
    assert after.succeeded, after.error


def test_a_tasks_cpu_limit_times_its_timeout_bounds_its_cpu_time() -> None:
    @task(limits=Resources(cpu="500m"), timeout=60)
    def half_a_cpu() -> None: ...

    limits = limits_of(
        half_a_cpu.template(), backend="box", cpu_seconds=5, memory="", processes=0, disk=""
    )
    assert limits.cpu_seconds == 30
    assert "limits cpu='500m' times its timeout" in limits.raise_with["cpu"]
    with pytest.raises(LimitError, match=r"\[backends.box\] memory '12q' is not an amount"):
        limits_of(
            half_a_cpu.template(), backend="box", cpu_seconds=0, memory="12q", processes=0, disk=""
        )
