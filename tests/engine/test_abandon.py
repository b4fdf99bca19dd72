"""Attempts left running with a recorded handle that the resumed run never reaches (a failure
elsewhere first): recorded `Interrupted`, and handed to their backend's `abandon` to stop
their work (issue 12's re-attach protocol). With a remote backend double that records the
calls, and with the real `subprocess` backend's `abandon` on a real process group."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from taskfabric import task, workflow
from taskfabric.backends import ProcessIdentity
from taskfabric.config import BackendConfig, Config, EngineConfig, StorageConfig
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.plugin_api import (
    BACKENDS_GROUP,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendSettings,
    TaskAttempt,
)
from taskfabric.plugins import Plugins, use_plugins


class RemoteDouble(Backend[BackendSettings]):
    """A remote backend that records what the engine asks of it. Its jobs never end on
    their own; in the resumed run (`resumed`), task `breaks` fails at once."""

    driver = "remote-double"
    reattaches = True
    poll_interval: ClassVar[float | None] = 0.02
    calls: ClassVar[list[tuple[str, str, str]]] = []
    resumed: ClassVar[bool] = False

    def __init__(self, name: str, settings: BackendSettings, context: Any) -> None:
        super().__init__(name, settings, context)
        self.status: dict[str, AttemptStatus] = {}

    def submit(self, attempt: TaskAttempt) -> None:
        RemoteDouble.calls.append(("submit", attempt.attempt_id, attempt.handle))
        if type(self).resumed and attempt.task.id.name.endswith("breaks"):
            error = AttemptError("Broken", "breaks on purpose", retryable=False)
            self.status[attempt.attempt_id] = AttemptStatus(AttemptPhase.FAILED, error=error)
            return
        if attempt.task.id.name.endswith("remote_job"):
            attempt.record_handle(f"job-{attempt.node_id}-{attempt.attempt}")
        self.status[attempt.attempt_id] = AttemptStatus(AttemptPhase.RUNNING)

    def poll(self, attempt_id: str) -> AttemptStatus:
        return self.status[attempt_id]

    def cancel(self, attempt_id: str) -> None:
        RemoteDouble.calls.append(("cancel", attempt_id, ""))

    def abandon(self, attempt_id: str, handle: str) -> None:
        RemoteDouble.calls.append(("abandon", attempt_id, handle))


@task
def breaks() -> int:
    return 1


@task
def remote_job() -> int:
    return 2


@workflow
def pair() -> tuple[int, int]:
    return breaks(), remote_job()


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    RemoteDouble.calls.clear()
    RemoteDouble.resumed = False
    found = Plugins(autoload=False)
    found.add_driver(BACKENDS_GROUP, "remote-double", RemoteDouble)
    with use_plugins(found):
        yield found


def _engine(tmp_path: Path, plugins: Plugins, parallelism: int) -> Engine:
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(parallelism=parallelism),
        task_types={"python": "remote"},
        backends={"remote": BackendConfig(driver="remote-double")},
    )
    return Engine(config, plugins=plugins)


def _until(what: str, check: Any) -> None:
    end = time.monotonic() + 60
    while not check():
        assert time.monotonic() < end, what
        time.sleep(0.02)


def test_an_attempt_the_resumed_run_never_reaches_is_handed_to_its_backend_to_stop(
    tmp_path: Path, plugins: Plugins
) -> None:
    # The first engine runs both tasks; it stops (as on SIGTERM) once the remote job's
    # handle is recorded: both attempts are left RUNNING, one with a handle.
    first = _engine(tmp_path, plugins, parallelism=2)
    rec = first.enqueue(
        pair.compile(), types_pb2.LiteralMap(), project="p", domain="d", name="x", code={}
    )
    stop = threading.Event()
    stopped: list[BaseException] = []

    def run() -> None:
        try:
            first.resume(rec.id, workflow=pair, stop=stop)
        except BaseException as exc:  # EngineShutdown
            stopped.append(exc)

    runner = threading.Thread(target=run)
    runner.start()
    _until(
        "the remote job's handle was never recorded",
        lambda: any(a.handle for a in first.metadata.attempts(rec.id)),
    )
    stop.set()
    runner.join(60)
    first.close()
    assert stopped and type(stopped[0]).__name__ == "EngineShutdown", stopped
    (left,) = [a for a in first.metadata.attempts(rec.id) if a.handle]
    assert left.phase == "RUNNING" and left.handle == f"job-{left.node_id}-1"
    attempt_id = f"{rec.id}/{left.node_id}/1"
    # The resumed run starts one attempt at a time: `breaks` first, which fails at once,
    # so the execution fails before the remote job is re-attached.
    RemoteDouble.resumed = True
    RemoteDouble.calls.clear()
    with _engine(tmp_path, plugins, parallelism=1) as second:
        result = second.resume(rec.id, workflow=pair)
        assert result.phase == "FAILED", result.error
        attempts = {(a.node_id, a.attempt): a for a in second.metadata.attempts(rec.id)}
    interrupted = attempts[(left.node_id, 1)]
    assert interrupted.phase == "FAILED" and (interrupted.error or {})["code"] == "Interrupted"
    assert not [c for c in RemoteDouble.calls if c[0] == "submit" and c[1] == attempt_id]
    assert [c for c in RemoteDouble.calls if c[0] == "abandon"] == [
        ("abandon", attempt_id, left.handle)
    ]


CHILD = """
import os, signal, sys
# only SIGKILL ends it; os.write, as a print in the handler could land inside the loop's own
# print and stop the child (RuntimeError: reentrant call inside BufferedWriter)
signal.signal(signal.SIGTERM, lambda *_: os.write(1, b"TERM\\n"))
print("ready", flush=True)
for line in sys.stdin:
    print("pong", flush=True)
"""


def test_the_subprocess_backend_abandons_only_the_process_its_handle_names(
    tmp_path: Path,
) -> None:
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        backends={"procs": BackendConfig(driver="subprocess", options={"kill_grace_seconds": 0.2})},
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a process group of its own, as the backend starts them
    )
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline() == "ready\n"
        identity = ProcessIdentity.of(child.pid)
        assert identity is not None
        with Engine(config) as engine:
            backend = engine.backends.named("procs")
            # another process's identity (the pid reused since), a provisional handle, junk
            other = ProcessIdentity(identity.pid, identity.start + 1, identity.boot)
            for handle in (other.handle, "process-starting:boot", "job-1"):
                backend.abandon("e/n0/1", handle)
            child.stdin.write("ping\n")
            child.stdin.flush()
            assert child.stdout.readline() == "pong\n"  # no SIGTERM came before the ping
            assert child.poll() is None
            backend.abandon("e/n0/1", identity.handle)  # returns at once; SIGKILL follows
        # closing the engine waited for the kill; the child ignored SIGTERM
        assert child.wait(60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
