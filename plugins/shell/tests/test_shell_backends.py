"""Shell tasks on each built-in backend: in the engine's process (`local`) and in a process per
attempt (`subprocess`, whose `taskfabric-execute` finds this plugin through its entry point)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import shell_tasks as t

from taskfabric import File, WorkflowDefinition
from taskfabric.config import load_config
from taskfabric.engine import Engine, ExecutionResult, _timers
from taskfabric.plugins import Plugins


@pytest.fixture(params=["local", "subprocess"])
def engine(
    request: pytest.FixtureRequest, plugins: Plugins, taskfabric_home: Path
) -> Iterator[Engine]:
    """An engine whose config runs every task on the backend under test."""
    backend = request.param
    config = taskfabric_home / "config.toml"
    config.write_text(f'[task_types]\npython = "{backend}"\nshell = "{backend}"\n')
    eng = Engine(load_config(), plugins=plugins)
    yield eng
    eng.close()


def outputs(engine: Engine, wf: WorkflowDefinition[Any, Any], result: ExecutionResult) -> Any:
    assert result.phase == "SUCCEEDED", result.error
    return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)


def backend_of(engine: Engine, result: ExecutionResult) -> set[str]:
    return {a.backend for a in engine.metadata.attempts(result.execution_id)}


def test_python_and_shell_tasks_in_one_workflow(engine: Engine) -> None:
    result = engine.launch(t.mixed, {"lines": 7})
    assert outputs(engine, t.mixed, result) == 14
    assert len(engine.metadata.nodes(result.execution_id)) == 3
    assert backend_of(engine, result) == {engine.config.task_types["shell"]}


def test_a_file_in_and_a_file_out(engine: Engine, tmp_path: Path) -> None:
    src = tmp_path / "in put.txt"  # a space in the name: the path is quoted
    src.write_text("quiet words\n")
    loud, text = outputs(engine, t.shout, engine.launch(t.shout, {"src": File(src)}))
    assert text == "QUIET WORDS\n"
    assert isinstance(loud, File) and loud.uri is not None  # stored as a blob
    assert loud.read_text() == "QUIET WORDS\n"


def test_scalar_outputs_of_each_type(engine: Engine, tmp_path: Path) -> None:
    src = tmp_path / "t.txt"
    src.write_text("one two\nthree four five six\n")
    result = engine.launch(t.stats, {"src": File(src)})
    assert outputs(engine, t.stats, result) == t.Summary(
        words=6, mean=3.0, empty=False, first="one two"
    )


def test_directory_output_list_input_and_env(engine: Engine, tmp_path: Path) -> None:
    given = []
    for name in ("x 1.txt", "y.txt"):
        (tmp_path / name).write_text(name)
        given.append(File(tmp_path / name))
    result = engine.launch(t.folder, {"n": 3, "files": given, "label": "it's me"})
    assert outputs(engine, t.folder, result) == (5, "hello, it's me")


def test_a_failing_script_fails_the_node_with_its_stderr(engine: Engine) -> None:
    result = engine.launch(t.failing, {"code": 3})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["node_id"] == "n0"
    assert result.error["code"] == "ShellScriptError"
    message = result.error["message"]
    assert "exited with code 3" in message
    assert "last 20 lines of stderr" in message
    assert "stderr line 30" in message and "stderr line 11" in message
    assert "stderr line 10\n" not in message
    assert "not in the error" not in message
    assert "stderr.log" in message  # where the whole output is
    [attempt] = engine.metadata.attempts(result.execution_id)
    assert (attempt.error or {}).get("kind") == "user"
    assert {n.node_id for n in engine.metadata.nodes(result.execution_id)} <= {"n0", "n1"}


def test_a_missing_output_file_is_a_clear_error(engine: Engine) -> None:
    result = engine.launch(t.forgetful, {"x": 1})
    assert result.phase == "FAILED" and result.error is not None
    assert result.error["code"] == "ShellOutputError"
    message = result.error["message"]
    assert "did not create output 'o0' (File)" in message
    assert "{outputs.o0}" in message and "$TF_OUTPUT_O0" in message


class HeldClock:
    """The clock of the engine's deadlines, held still until `ready()` holds and then put past
    every deadline set so far: an attempt's timeout fires once its script is known to run,
    however long its process took to start on a busy machine. Released after `guard` real
    seconds anyway, so that a script that never gets ready fails the test, not hangs it."""

    def __init__(self, ready: Callable[[], bool], jump: float, guard: float = 120.0) -> None:
        self._ready = ready
        self._jump = jump
        self._guard = guard
        self._start = time.monotonic()
        self._offset: float | None = None
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        now = time.monotonic()
        with self._lock:
            if self._offset is None:
                if not self._ready() and now - self._start < self._guard:
                    return self._start
                self._offset = now - self._start - self._jump
            return now - self._offset


def test_a_timed_out_script_is_stopped_with_what_it_started(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    # the script writes the pid and its newline in one write: a whole pid once it ends so
    clock = HeldClock(lambda: pid_file.exists() and pid_file.read_text().endswith("\n"), jump=5)
    monkeypatch.setattr(_timers, "time", SimpleNamespace(monotonic=clock.monotonic))
    result = engine.launch(t.too_slow, {"pid_file": str(pid_file)})
    assert result.phase == "FAILED"
    [node] = engine.metadata.nodes(result.execution_id)
    # Stopped by the engine's timeout (TIMED_OUT; on `subprocess` it kills the attempt's
    # process group) or by the script's own timer (the task's timeout in real time, which
    # stops the script's descendants itself: the only stop on `local`, where the engine
    # cannot stop its thread). Which of the two ends the attempt first is not asserted.
    message = (result.error or {}).get("message", "")
    stopped_itself = "ran for more than 5s and was stopped" in message
    assert node.phase == "TIMED_OUT" or stopped_itself, result.error
    assert pid_file.read_text().endswith("\n"), "the timeout fired before the script ran"
    pid = int(pid_file.read_text())
    # a hang guard, not a margin: what the script started sleeps 600 s unless it is killed
    deadline = time.monotonic() + 120
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(pid), "a process the script started outlived the task's timeout"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
