"""The built-in subprocess backend: each attempt in its own process, crashes contained."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from taskfabric.config import BackendConfig, Config, StorageConfig
from taskfabric.engine import Engine, _timers, load_object

TASKS = """
import os, signal, time
from pathlib import Path
from taskfabric import File, Retry, task, workflow

@task
def segfault(x: int) -> int:
    os.kill(os.getpid(), signal.SIGSEGV)
    return x

@task
def hard_exit(x: int) -> int:
    os._exit(7)

@task
def pid_of(x: int) -> int:
    return os.getpid()

@task(timeout=1)  # counted from the marker in the tests (held_timeouts), however slow the start
def sleepy(marker: str) -> int:
    Path(marker).write_text(str(os.getpid()))
    time.sleep(600)
    return 1

@task(timeout=1)  # counted from the marker (held_timeouts)
def stubborn(marker: str) -> int:
    # ignores SIGTERM, and starts a child in its process group
    import subprocess
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen(["sleep", "600"])
    Path(marker).write_text(f"{os.getpid()} {child.pid}")
    time.sleep(600)
    return 1

@task
def write(text: str) -> File:
    f = File.new("t.txt")
    Path(f.path).write_text(text)
    return f

@task
def read(f: File) -> str:
    return Path(f.path).read_text()

@workflow
def crash() -> int:
    return segfault(x=1)

@workflow
def exits() -> int:
    return hard_exit(x=1)

@workflow
def pids() -> int:
    return pid_of(x=1)

@workflow
def slow(marker: str) -> int:
    return sleepy(marker=marker)

@workflow
def stubborn_wf(marker: str) -> int:
    return stubborn(marker=marker)

@workflow
def files(text: str) -> str:
    return read(f=write(text=text))
"""


@pytest.fixture
def wfs(tmp_path: Path) -> Any:
    path = tmp_path / "sp_tasks.py"
    path.write_text(textwrap.dedent(TASKS))
    sys.modules.pop("sp_tasks", None)

    class Loaded:
        def __getattr__(self, name: str) -> Any:
            return load_object(f"{path}:{name}")[0]

    yield Loaded()
    sys.modules.pop("sp_tasks", None)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        task_types={"python": "procs"},
        backends={"procs": BackendConfig(driver="subprocess", options={"kill_grace_seconds": 1})},
    )
    with Engine(config) as eng:
        yield eng


def test_runs_in_another_process(engine: Engine, wfs: Any) -> None:
    result = engine.launch(wfs.pids, {})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(wfs.pids, engine.store) != os.getpid()


def test_a_segfault_is_an_attempt_failure_not_an_engine_crash(engine: Engine, wfs: Any) -> None:
    result = engine.launch(wfs.crash, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "ProcessDied"
    assert "killed by SIGSEGV" in result.error["message"]
    attempt = engine.metadata.attempts(result.execution_id)[0]
    assert attempt.log_links and attempt.log_links[0]["uri"].startswith("file://")


def test_os_exit_is_an_attempt_failure(engine: Engine, wfs: Any) -> None:
    result = engine.launch(wfs.exits, {})
    assert result.error is not None and "exited with code 7" in result.error["message"]


class HeldClock:
    """The clock of the engine's deadlines, held still until `ready()` holds: an attempt's
    timeout then counts from the moment its task is known to run, however long its process
    took to start on a busy machine. Released after `guard` real seconds anyway, so that a
    task that never gets ready fails the test instead of hanging it."""

    def __init__(self, ready: Callable[[], bool], guard: float = 120.0) -> None:
        self._ready = ready
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
                self._offset = now - self._start
            return now - self._offset


def held_timeouts(
    monkeypatch: pytest.MonkeyPatch, marker: Path, also: Callable[[], bool] = lambda: True
) -> None:
    """Timeouts count from when the task has written its pid to `marker` (and `also()`)."""
    clock = HeldClock(lambda: marker.exists() and marker.read_text() != "" and also())
    monkeypatch.setattr(_timers, "time", SimpleNamespace(monotonic=clock.monotonic))


def test_timeout_kills_the_process(
    engine: Engine, wfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "marker"
    held_timeouts(monkeypatch, marker)
    started = time.monotonic()
    result = engine.launch(wfs.slow, {"marker": str(marker)})
    assert result.phase == "FAILED"
    assert result.error is not None and result.error["code"] == "Timeout"
    # a hang guard, not a margin: the task sleeps 600 s after writing its marker
    assert time.monotonic() - started < 300, "the engine waited for the task's sleep"
    assert marker.read_text() != "", "the timeout fired before the task ran (clock not held)"
    pid = int(marker.read_text())
    deadline = time.monotonic() + 120  # a hang guard too: far less than the 600 s sleep
    while _alive(pid):  # the process was killed, not abandoned
        assert time.monotonic() < deadline, f"task process {pid} still runs after its timeout"
        time.sleep(0.05)


def test_close_kills_what_ignores_sigterm_before_it_returns(
    tmp_path: Path, wfs: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A timeout at the end of a run, then the engine closes: the kill (SIGTERM, SIGKILL after
    the grace) runs on a daemon thread that dies with the engine process, so `close` itself
    waits for it. A task that ignores SIGTERM, and the child in its group, are dead when
    `close` returns, not left running after the engine process exits."""
    marker = tmp_path / "marker"
    held_timeouts(monkeypatch, marker)
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        task_types={"python": "procs"},
        backends={"procs": BackendConfig(driver="subprocess", options={"kill_grace_seconds": 1})},
    )
    with Engine(config) as engine:
        result = engine.launch(wfs.stubborn_wf, {"marker": str(marker)})
        assert result.error is not None and result.error["code"] == "Timeout", result.error
        pid, child = (int(p) for p in marker.read_text().split())
    # the task process is the engine's child: `close` reaped it
    assert not _alive(pid), f"task process {pid} ignored SIGTERM and outlived close()"
    # its child was in the group that got SIGKILL before close returned; the signal is only
    # delivered when the kernel next schedules it (a hang guard, not a margin)
    deadline = time.monotonic() + 60
    while _alive(child):
        assert time.monotonic() < deadline, f"the task's child {child} outlived close()"
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or during the read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, only not reaped yet


def test_log_links_are_recorded_while_the_attempt_runs_and_kept_when_it_is_stopped(
    engine: Engine, wfs: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "m"
    seen = threading.Event()  # the timeout waits for this test to have seen the attempt run
    held_timeouts(monkeypatch, marker, seen.is_set)
    results: list[Any] = []
    thread = threading.Thread(
        target=lambda: results.append(engine.launch(wfs.slow, {"marker": str(marker)}))
    )
    thread.start()
    deadline = time.monotonic() + 120  # a hang guard: the attempt runs until `seen` is set
    running: list[Any] = []
    while not running and time.monotonic() < deadline:
        running = [
            a
            for e in engine.metadata.list_executions()
            for a in engine.metadata.attempts(e.id)
            if a.phase == "RUNNING" and a.log_links
        ]
        time.sleep(0.02)
    seen.set()
    thread.join(120)
    assert running, "no RUNNING attempt was recorded with its log link"
    (link,) = running[0].log_links
    assert link["name"] == "output" and link["uri"].endswith("/output.log")
    # the timeout stopped it: the TIMED_OUT attempt keeps the link it had while running
    (result,) = results
    (ended,) = engine.metadata.attempts(result.execution_id)
    assert ended.phase == "TIMED_OUT" and ended.log_links == [link]


def test_files_cross_process_boundaries(engine: Engine, wfs: Any) -> None:
    result = engine.launch(wfs.files, {"text": "över the wire"})
    assert result.python_outputs(wfs.files, engine.store) == "över the wire"


def test_execute_entrypoint_reports_a_task_it_cannot_load(tmp_path: Path) -> None:
    from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2
    from taskfabric.storage import LocalBlobStore

    store = LocalBlobStore(tmp_path)
    template = tasks_pb2.TaskTemplate(type="python")
    template.function.module = "no_such_module_here"
    template.function.qualname = "t"
    store.put_bytes(store.uri("t.pb"), template.SerializeToString())
    store.put_bytes(store.uri("in.pb"), types_pb2.LiteralMap().SerializeToString())
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "taskfabric.execute",
            "--task-template",
            store.uri("t.pb"),
            "--inputs",
            store.uri("in.pb"),
            "--outputs",
            store.uri("out.pb"),
            "--error",
            store.uri("err.pb"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    err = execution_pb2.ExecutionError()
    err.ParseFromString(store.get_bytes(store.uri("err.pb")))
    assert "cannot load task no_such_module_here:t" in err.message
    assert not err.retryable


def test_the_exit_helpers_plugins_share(tmp_path: Path) -> None:
    """`describe_exit` and `tail`, public in taskfabric.backends for every plugin's error
    messages: a Popen return code, and a shell / container runtime / Kubernetes status."""
    from taskfabric.backends import describe_exit, tail

    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(None) == "ended"
    assert describe_exit(137) == "exited with code 137"
    assert describe_exit(137, shell_status=True) == "was killed by SIGKILL"
    assert describe_exit(143, shell_status=True) == "was killed by SIGTERM"
    assert describe_exit(2, shell_status=True) == "exited with code 2"
    assert describe_exit(128 + 99, shell_status=True) == "was killed by signal 99"
    log = tmp_path / "out.log"
    log.write_text("".join(f"line {i}\n" for i in range(50)))
    assert tail(log, 3) == "line 47\nline 48\nline 49"
    assert tail(tmp_path / "missing.log") == ""
