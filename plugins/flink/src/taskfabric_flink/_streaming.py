"""Unbounded streaming jobs as tasks: run until a stop condition, stop with a savepoint, and
start the next run (or a retry) of the task from the last savepoint recorded as its state.

- The stop conditions: the task's `stop_after_seconds`, or a stop request for its execution
  (`taskfabric flink stop EXECUTION_ID`, or `request_stop(data_root, execution_id)`: a marker
  file in the execution's work folder that the client watches).
- The task's state: `<data_root>/flink-state/<project>/<domain>/<task name>.json`, holding the
  path of the last savepoint the task stopped with. The backend starts every attempt of the
  task from it (`execution.state-recovery.path`), unless the task's conf names another.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric_flink._environment import ATTEMPT_ENV, job_name, stream_env

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment

__all__ = [
    "STREAMING_ENV",
    "StreamingSettings",
    "read_savepoint",
    "record_savepoint",
    "request_stop",
    "run_until_stopped",
    "state_file",
    "stop_file",
]

#: The client's streaming settings (JSON of StreamingSettings), given by the backend.
STREAMING_ENV = "TASKFABRIC_FLINK_STREAMING"
#: The Flink option a job is restored from.
RESTORE_KEY = "execution.state-recovery.path"


@dataclass(frozen=True)
class StreamingSettings:
    state_file: str
    stop_file: str
    savepoint_dir: str
    stop_after_seconds: float | None = None


def state_file(data_root: Path, project: str, domain: str, task_name: str) -> Path:
    """Where the last savepoint of a task is recorded."""
    return data_root / "flink-state" / (project or "_") / (domain or "_") / f"{task_name}.json"


def stop_file(data_root: Path, execution_id: str) -> Path:
    """The marker that asks the streaming jobs of an execution to stop with a savepoint."""
    return data_root / "work" / execution_id / "flink.stop"


def read_savepoint(path: Path) -> str:
    """The savepoint recorded in a task's state file, or ''."""
    try:
        return str(json.loads(path.read_text(encoding="utf-8")).get("savepoint", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def request_stop(data_root: Path, execution_id: str) -> Path:
    """Ask the streaming jobs of `execution_id` to stop with a savepoint; the marker's path."""
    marker = stop_file(data_root, execution_id)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text(f"requested at {time.time():.3f}\n", encoding="utf-8")
    return marker


def _settings() -> StreamingSettings:
    raw = os.environ.get(STREAMING_ENV, "")
    if not raw:
        raise RuntimeError(
            "run_until_stopped() runs in flink tasks on the flink-local and flink-cluster "
            "backends, which tell it where to record the savepoint"
        )
    return StreamingSettings(**json.loads(raw))


def streaming_env_value(settings: StreamingSettings) -> str:
    return json.dumps(asdict(settings), sort_keys=True)


def _stop_with_savepoint(client: Any, directory: str) -> str:
    """The job stopped with a canonical savepoint in `directory`; its path. (PyFlink's own
    JobClient.stop_with_savepoint calls a Java method that Flink 2 no longer has.)"""
    from pyflink.java_gateway import get_gateway

    formats = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType
    future = client._j_job_client.stopWithSavepoint(False, directory, formats.CANONICAL)
    return str(future.get())


def _watch(client: Any, settings: StreamingSettings, poll: float) -> str:
    """Wait for a stop condition and stop the job with a savepoint; '' when the job ended by
    itself."""
    started = time.monotonic()
    stop = Path(settings.stop_file)
    while True:
        status = client.get_job_status().result()
        if status.is_globally_terminal_state():
            client.get_job_execution_result().result()  # raises the job's failure
            return ""
        due = settings.stop_after_seconds
        if stop.exists() or (due is not None and time.monotonic() - started >= due):
            return _stop_with_savepoint(client, settings.savepoint_dir)
        time.sleep(poll)


def run_until_stopped(env: StreamExecutionEnvironment | None = None, poll: float = 0.5) -> str:
    """Run the job built on `env` (default: `stream_env()`) until a stop condition, stop it
    with a savepoint, record that savepoint as the task's state and return its path.

    A job that ends by itself (a bounded source) returns '' and records nothing; a job that
    fails raises its error."""
    settings = _settings()
    env = env or stream_env()
    client = env.execute_async(job_name(os.environ.get(ATTEMPT_ENV, "streaming")))
    try:
        savepoint = _watch(client, settings, poll)
    except BaseException:
        # The client is the job's only owner: a failure here must not leave it running.
        with contextlib.suppress(Exception):
            client.cancel().result()
        raise
    if not savepoint:
        return ""
    record_savepoint(Path(settings.state_file), savepoint, os.environ.get(ATTEMPT_ENV, ""))
    return savepoint


def record_savepoint(state: Path, savepoint: str, attempt_id: str) -> None:
    """Record `savepoint` as the task's state: its next attempts start from it."""
    state.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"savepoint": savepoint, "attempt": attempt_id, "at": time.time()}
    tmp = state.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record), encoding="utf-8")
    tmp.replace(state)  # a reader sees the old record or the new one, never half of one
