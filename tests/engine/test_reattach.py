"""Re-attach after a real `kill -9` of the engine process: the attempt's process (a
`subprocess` backend task) runs on, and `executions resume` takes it over instead of starting
it again (on SQLite and PostgreSQL), reads its result when it ended meanwhile, and runs the
attempt again only when the process died without one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from taskfabric.backends import ProcessIdentity
from taskfabric.metadata import AttemptRecord, MetadataStore

WORKFLOW = '''
import os, time
from pathlib import Path
from taskfabric import task, workflow

@task
def gated(scratch: str) -> int:
    """One line per run of its body in runs.txt; waits for the file `go`; returns its pid."""
    folder = Path(scratch)
    with (folder / "runs.txt").open("a") as fh:
        fh.write(f"{os.getpid()}\\n")
    while not (folder / "go").exists():
        time.sleep(0.02)
    return os.getpid()

@workflow
def wf(scratch: str) -> int:
    return gated(scratch=scratch)
'''

DEADLINE = 60.0


@dataclass
class Setup:
    env: dict[str, str]
    url: str
    scratch: Path
    workflow: Path

    def taskfabric(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "taskfabric.cli", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )

    def attempts(self) -> tuple[str, list[AttemptRecord]]:
        store = MetadataStore(self.url)
        try:
            executions = store.list_executions()
            if not executions:
                return "", []
            return executions[0].id, store.attempts(executions[0].id)
        finally:
            store.close()

    def runs(self) -> list[int]:
        path = self.scratch / "runs.txt"
        return [int(x) for x in path.read_text().split()] if path.exists() else []


@pytest.fixture
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Setup]:
    """SQLite, unless parametrized (indirect) with "postgresql"."""
    data = tmp_path / "data"
    if getattr(request, "param", "sqlite") == "sqlite":
        url = f"sqlite:///{data / 'taskfabric.db'}"
    else:
        make: Callable[[str], str] = request.getfixturevalue("postgres_schema")
        url = make("reattach")
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        textwrap.dedent(
            f"""
            [storage]
            data_root = "{data}"
            [metadata]
            url = "{url}"
            [task_types]
            python = "procs"
            [backends.procs]
            driver = "subprocess"
            kill_grace_seconds = 1
            """
        )
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    workflow = tmp_path / "reattach_wf.py"
    workflow.write_text(WORKFLOW)
    env = dict(
        os.environ,
        TASKFABRIC_CONFIG=str(config),
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    env.pop("TASKFABRIC_DATA_ROOT", None)
    yield Setup(env, url, scratch, workflow)
    (scratch / "go").touch()  # a task process still waiting ends


def _until(what: str, check: Callable[[], bool], proc: subprocess.Popen[str] | None) -> None:
    end = time.monotonic() + DEADLINE
    while not check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"{what}: the engine exited first: {proc.communicate()}")
        if time.monotonic() > end:
            pytest.fail(f"{what}: not within {DEADLINE:g}s")
        time.sleep(0.05)


def _engine_killed_while_the_task_runs(s: Setup) -> tuple[str, int]:
    """Run the workflow in an engine process, kill -9 it once its task process runs and its
    handle is recorded; returns the execution id and the task's pid."""
    engine = s.taskfabric("run", f"{s.workflow}:wf", "--scratch", str(s.scratch))

    def handle_recorded() -> bool:
        _, attempts = s.attempts()
        return bool(s.runs()) and any(a.handle.startswith("process:") for a in attempts)

    _until("the task process never started", handle_recorded, engine)
    engine.send_signal(signal.SIGKILL)
    engine.communicate()
    execution_id, attempts = s.attempts()
    (attempt,) = attempts
    identity = ProcessIdentity.parse(attempt.handle)
    (pid,) = s.runs()
    assert attempt.phase == "RUNNING" and identity is not None and identity.pid == pid
    assert identity.running(), "the task process died with its engine"
    return execution_id, pid


def _resume(s: Setup, execution_id: str, *, go_when: str) -> tuple[str, str]:
    """`executions resume`; the task is let go once the resumed engine logs `go_when`
    (immediately when it is '')."""
    resumed = s.taskfabric("--log-level", "info", "executions", "resume", execution_id)
    assert resumed.stderr is not None and resumed.stdout is not None
    stderr: list[str] = []
    seen = threading.Event()

    def read_stderr() -> None:
        assert resumed.stderr is not None
        for line in resumed.stderr:
            stderr.append(line)
            if go_when and go_when in line:
                seen.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    if go_when:
        _until(f"the resumed engine never logged {go_when!r}", seen.is_set, resumed)
    (s.scratch / "go").touch()
    out = resumed.stdout.read()
    resumed.wait(DEADLINE)
    reader.join(DEADLINE)
    assert resumed.returncode == 0, "".join(stderr)
    return out, "".join(stderr)


@pytest.mark.slow
@pytest.mark.parametrize("setup", ["sqlite", "postgresql"], indirect=True)
def test_resume_adopts_the_running_task_process_after_kill_9(setup: Setup) -> None:
    s = setup
    execution_id, pid = _engine_killed_while_the_task_runs(s)
    out, err = _resume(s, execution_id, go_when="re-attached to the attempt's process")
    assert f"o0 = {pid}" in out, (out, err)  # the result came from the adopted process
    assert s.runs() == [pid]  # one task process ran, once
    _, attempts = s.attempts()
    assert [(a.attempt, a.phase) for a in attempts] == [(1, "SUCCEEDED")]
    assert not ProcessIdentity.parse(attempts[0].handle).running()  # type: ignore[union-attr]


@pytest.mark.slow
def test_resume_reads_the_result_of_a_task_that_ended_while_no_engine_ran(setup: Setup) -> None:
    s = setup
    execution_id, pid = _engine_killed_while_the_task_runs(s)
    (s.scratch / "go").touch()
    identity = ProcessIdentity.parse(s.attempts()[1][0].handle)
    assert identity is not None
    _until("the task process never ended", lambda: not identity.running(), None)
    out, err = _resume(s, execution_id, go_when="")
    assert f"o0 = {pid}" in out, (out, err)
    assert "its outcome is read" in err
    assert s.runs() == [pid]
    _, attempts = s.attempts()
    assert [(a.attempt, a.phase) for a in attempts] == [(1, "SUCCEEDED")]


@pytest.mark.slow
def test_a_task_process_gone_without_a_result_is_interrupted_and_runs_again(
    setup: Setup,
) -> None:
    # The task has no retries: an attempt whose process died with no engine watching runs
    # again as a new attempt on resume, as interrupted attempts always did.
    s = setup
    execution_id, pid = _engine_killed_while_the_task_runs(s)
    os.killpg(pid, signal.SIGKILL)
    identity = ProcessIdentity.parse(s.attempts()[1][0].handle)
    assert identity is not None
    _until("the killed task process is still there", lambda: not identity.running(), None)
    out, err = _resume(s, execution_id, go_when="")
    (first, second) = s.runs()
    assert first == pid and second != pid
    assert f"o0 = {second}" in out, (out, err)
    _, attempts = s.attempts()
    assert [(a.attempt, a.phase) for a in attempts] == [(1, "FAILED"), (2, "SUCCEEDED")]
    assert (attempts[0].error or {}).get("code") == "Interrupted", attempts[0].error
