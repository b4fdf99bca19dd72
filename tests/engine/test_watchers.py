"""A backend's watcher thread never leaves an attempt waiting for ever (issue 21's drill): a
task that calls `sys.exit()` on the local backend, or a backend thread that ends with an
exception of any kind, fails the attempt with what happened."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric.backends import LocalBackend
from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP, AttemptStatus, TaskAttempt
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.sdk import task, workflow
from taskfabric.testing._harness import config_text, launch


@task
def quits() -> int:
    sys.exit(3)


@workflow
def quitting() -> int:
    return quits()


@task
def fine() -> int:
    return 1


@workflow
def fine_wf() -> int:
    return fine()


class Crashing(LocalBackend):
    """A thread backend whose own code fails with something that is not an Exception."""

    driver = "crashing"

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        raise KeyboardInterrupt("a bug of the backend")


def _engine(tmp_path: Path, driver: str) -> Engine:
    path = tmp_path / "taskfabric.toml"
    path.write_text(
        config_text(
            data_root=tmp_path / "data",
            backend={"driver": driver},
            task_type="python",
            parallelism=1,
        )
    )
    return Engine(load_config(path))


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    found = Plugins(autoload=False)
    found.add_driver(BACKENDS_GROUP, "crashing", Crashing)
    with use_plugins(found):
        yield found


@pytest.mark.parametrize("driver", ["local", "subprocess"])
def test_a_task_that_calls_sys_exit_fails(tmp_path: Path, plugins: Plugins, driver: str) -> None:
    with _engine(tmp_path, driver) as engine:
        result = launch(engine, quitting, {}, task_type="python", deadline=60)
        assert result.phase == "FAILED", result
        error: dict[str, Any] = dict(result.error or {})
        assert error["code"] == "SystemExit", error
        assert "called sys.exit(3) instead of returning or raising" in error["message"]
        again = launch(engine, fine_wf, {}, task_type="python", deadline=60)
        assert again.phase == "SUCCEEDED", "the backend's thread still works"


def test_a_backend_thread_that_crashes_fails_its_attempt(tmp_path: Path, plugins: Plugins) -> None:
    with _engine(tmp_path, "crashing") as engine:
        result = launch(engine, fine_wf, {}, task_type="python", deadline=60)
    assert result.phase == "FAILED", result
    error: dict[str, Any] = dict(result.error or {})
    assert error["code"] == "KeyboardInterrupt", error
