"""What a task on a thread backend runs in: its log lines carry its execution, node and
attempt, its prints go to its attempt's log, and what it binds in its context (a context
variable) ends with the attempt, while what a backend's `run_attempt` override binds before
calling `super().run_attempt` is seen by the task (`ThreadBackend` runs each attempt in a
copy of its thread's context)."""

from __future__ import annotations

import contextvars
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfabric import task, workflow
from taskfabric.backends import ThreadBackend
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.logs import configure_logging, get_logger
from taskfabric.plugin_api import BACKENDS_GROUP, AttemptStatus, BackendSettings, TaskAttempt
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.tasklogs import attempt_log

#: bound by a task, never reset by it
LEFT_BY_A_TASK: contextvars.ContextVar[str] = contextvars.ContextVar("left", default="unset")
#: bound by the backend override below around each attempt
SET_BY_BACKEND: contextvars.ContextVar[str] = contextvars.ContextVar("backend", default="unset")

log = get_logger("tests.task")


@task
def speak(x: int) -> int:
    seen = LEFT_BY_A_TASK.get()
    LEFT_BY_A_TASK.set(f"left by {x}")
    log.warning("in the task", x=x, seen=seen, backend=SET_BY_BACKEND.get())
    print(f"printed by {x}")
    return x + 1


@workflow
def talk(x: int) -> int:
    for _ in range(3):
        x = speak(x=x)
    return x


class _Settings(BackendSettings):
    workers: int | None = None


class Binding(ThreadBackend[_Settings]):
    driver = "binding"
    settings_model = _Settings

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        token = SET_BY_BACKEND.set(attempt.node_id)
        try:
            return super().run_attempt(attempt)
        finally:
            SET_BY_BACKEND.reset(token)


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    out = io.StringIO()
    configure_logging(level="warning", fmt="json", stream=out)
    yield out
    configure_logging()


@pytest.mark.parametrize("backend", ["local", "binding"])
def test_a_tasks_lines_carry_its_ids_its_prints_go_to_its_log_its_bindings_end_with_it(
    tmp_path: Path, lines: io.StringIO, backend: str
) -> None:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "binding", Binding)
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        task_types={"python": backend},
        backends={"binding": {"driver": "binding"}},  # type: ignore[dict-item]
    )
    with use_plugins(plugins), Engine(config, plugins=plugins) as engine:
        result = engine.launch(talk, {"x": 0})
        assert result.succeeded, result.error
        logs = {
            node: attempt_log(
                engine.metadata, engine.store, engine.work_root, result.execution_id, node
            ).text
            for node in ("n0", "n1", "n2")
        }
    events = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert [
        {k: e.get(k) for k in ("execution_id", "node_id", "attempt", "x", "seen", "backend")}
        for e in events
        if e["event"] == "in the task"
    ] == [
        {
            "execution_id": result.execution_id,
            "node_id": f"n{x}",
            "attempt": 1,
            "x": x,
            "seen": "unset",  # not what the task before it, on the same thread, bound
            "backend": f"n{x}" if backend == "binding" else "unset",
        }
        for x in range(3)
    ]
    assert logs == {f"n{x}": f"printed by {x}\n" for x in range(3)}
    assert LEFT_BY_A_TASK.get() == "unset"
