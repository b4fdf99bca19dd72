"""`ProcessBackend`: the base of backends that run each attempt as a local process (which may
itself drive a remote engine: `spark-submit`, a cloud CLI) through `taskfabric-execute`.

It owns the bookkeeping those backends share: the attempt's task template put in the blob
store, a work folder and a log file per attempt, one process group per attempt, a thread that
waits for it, the exit read back as the outputs or the error document `taskfabric-execute`
wrote (or as a crash with the end of the log), and a cancel that sends SIGTERM to the group,
then SIGKILL after a grace period. A subclass says which command to run (`command`) and may
change the environment, the log links, what a crash says and what else a kill does.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import ClassVar, TypeVar

from taskfabric.core.v1 import execution_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    RUNNING,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendContext,
    BackendSettings,
    LogLink,
    TaskAttempt,
)
from taskfabric.tasklogs import LOG_LINK_NAME, keep_log

log = get_logger("taskfabric.engine")

SettingsT = TypeVar("SettingsT", bound=BackendSettings)


def tail(path: Path, lines: int = 20, max_bytes: int = 32768) -> str:
    """The last `lines` lines of a log file (read from its last `max_bytes`), or ''."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - max_bytes))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def describe_exit(code: int) -> str:
    """'exited with code 3', 'was killed by SIGKILL'."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class ProcessRun:
    """One attempt's process."""

    def __init__(self, attempt: TaskAttempt, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.attempt = attempt
        self.proc = proc
        self.log_path = log_path
        self.cancelled = False


class ProcessBackend(Backend[SettingsT]):
    """Runs each attempt as `command(...)` in a process group of its own; see the module
    docstring. Subclasses implement `command` and may override `environment`, `log_links`,
    `crash_error`, `launch_error`, `after_kill` and `kill_grace_seconds`."""

    poll_interval: ClassVar[float | None] = None
    #: The name of the attempt's log file in its work folder.
    log_name: ClassVar[str] = "output.log"

    def __init__(self, name: str, settings: SettingsT, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self._runs: dict[str, ProcessRun] = {}
        self._results: dict[str, AttemptStatus] = {}
        self._starting: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._lock = threading.Lock()

    # -- what subclasses say -----------------------------------------------------------

    def command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        """The command line of the attempt; it must end up running `taskfabric-execute`
        with these URIs (`--task-template template_uri --inputs attempt.inputs_uri ...`)."""
        raise NotImplementedError

    @staticmethod
    def execute_args(attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        """The arguments of `taskfabric-execute` (`python -m taskfabric.execute`) for the
        attempt: what a `command` ends with."""
        return [
            "--task-template", template_uri,
            "--inputs", attempt.inputs_uri,
            "--outputs", attempt.outputs_uri,
            "--error", attempt.error_uri,
            "--raw-prefix", attempt.raw_prefix,
            "--work-dir", str(work_dir),
        ]  # fmt: skip

    @staticmethod
    def with_task_path(env: dict[str, str]) -> dict[str, str]:
        """`env` with the working folder first on PYTHONPATH: the task's module is found the
        way the engine found it."""
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p
        )
        return env

    def environment(self) -> dict[str, str]:
        """The process's environment: this process's, with `with_task_path`."""
        return self.with_task_path(dict(os.environ))

    @property
    def kill_grace_seconds(self) -> float:
        """Seconds between SIGTERM and SIGKILL (the settings' `kill_grace_seconds`)."""
        return float(getattr(self.settings, "kill_grace_seconds", 5.0))

    def log_links(self, run: ProcessRun) -> list[LogLink]:
        """Links of an ended attempt (its log file by default)."""
        return [LogLink("output", run.log_path.as_uri())]

    def running_links(self, run: ProcessRun) -> list[LogLink]:
        """Links to follow a running attempt, reported as soon as its process starts (its
        log file, as it is written, by default)."""
        return [LogLink("output", run.log_path.as_uri())]

    def crash_error(self, run: ProcessRun, code: int) -> AttemptError:
        """The error of a process that ended without outputs or an error document."""
        how = "exited with code 0 without writing its outputs" if code == 0 else describe_exit(code)
        message = f"the task process {how}"
        last = tail(run.log_path)
        if last:
            message += f"; last lines of its output:\n{last}"
        return AttemptError("ProcessDied", message, kind="system", retryable=True)

    def launch_error(self, attempt: TaskAttempt, exc: Exception) -> AttemptStatus | None:
        """How the attempt ends when its process cannot start; None: `submit` raises, and
        the engine records a retryable system error."""
        return None

    def after_kill(self, run: ProcessRun) -> None:
        """Called on a background thread once a cancelled process has ended."""

    # -- the backend ---------------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        ctx = self.context
        with self._lock:
            if attempt.attempt_id in self._runs or attempt.attempt_id in self._results:
                return
            if attempt.attempt_id in self._starting:
                return
            self._starting.add(attempt.attempt_id)
        try:
            prefix = ctx.store.uri("executions", attempt.execution_id)
            key = attempt.node_id.replace("[", "/").replace("]", "")
            template_uri = ctx.literals.put(
                prefix, f"nodes/{key}/task.pb", attempt.task.SerializeToString(deterministic=True)
            )
            work_dir = ctx.work_root / attempt.execution_id / key / str(attempt.attempt)
            work_dir.mkdir(parents=True, exist_ok=True)
            log_path = work_dir / self.log_name
            command = self.command(attempt, template_uri, work_dir)
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**self.environment(), **attempt.env},
                    start_new_session=True,
                )
        except Exception as exc:
            status = self.launch_error(attempt, exc)
            with self._lock:
                self._starting.discard(attempt.attempt_id)
                if status is not None:
                    self._results[attempt.attempt_id] = status
            if status is None:
                raise
            attempt.notify(attempt.attempt_id)
            return
        log.info(
            "attempt process started",
            backend=self.name,
            attempt_id=attempt.attempt_id,
            pid=proc.pid,
        )
        run = ProcessRun(attempt, proc, log_path)
        running = AttemptStatus(AttemptPhase.RUNNING, log_links=self.running_links(run))
        with self._lock:
            self._starting.discard(attempt.attempt_id)
            self._runs[attempt.attempt_id] = run
            self._results[attempt.attempt_id] = running
            cancel_now = attempt.attempt_id in self._cancel_requested
            self._cancel_requested.discard(attempt.attempt_id)
        if cancel_now:
            run.cancelled = True
            self._kill(run)
        else:
            attempt.notify(attempt.attempt_id)  # the engine records the links
        threading.Thread(
            target=self._wait, args=(run,), name=f"taskfabric-wait-{proc.pid}", daemon=True
        ).start()

    def _wait(self, run: ProcessRun) -> None:
        code = run.proc.wait()
        # A cancelled attempt is never reported: the engine has moved on.
        status = None if run.cancelled else self._status(run, code)
        with self._lock:
            self._runs.pop(run.attempt.attempt_id, None)
            stopped = True
            if run.cancelled or status is None:
                self._results.pop(run.attempt.attempt_id, None)
            else:
                self._results[run.attempt.attempt_id] = status
                stopped = False
        if stopped:
            # a stopped attempt's output is kept too: why it hung is often in there
            a = run.attempt
            keep_log(self.context.store, a.execution_id, a.node_id, a.attempt, run.log_path)
            return
        run.attempt.notify(run.attempt.attempt_id)

    def _status(self, run: ProcessRun, code: int) -> AttemptStatus:
        attempt = run.attempt
        store = self.context.store
        links = self.log_links(run)
        kept = keep_log(store, attempt.execution_id, attempt.node_id, attempt.attempt, run.log_path)
        if kept is not None:
            links = [LogLink(LOG_LINK_NAME, kept), *links]
        if code == 0 and store.exists(attempt.outputs_uri):
            return AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
            )
        if code in (1, 2) and store.exists(attempt.error_uri):
            err = execution_pb2.ExecutionError()
            try:
                err.ParseFromString(store.get_bytes(attempt.error_uri))
                return AttemptStatus(
                    AttemptPhase.FAILED, error=AttemptError.from_proto(err), log_links=links
                )
            except Exception:
                log.warning("unreadable error document", uri=attempt.error_uri)
        return AttemptStatus(
            AttemptPhase.FAILED, error=self.crash_error(run, code), log_links=links
        )

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            return self._results.get(attempt_id, RUNNING)

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            run = self._runs.get(attempt_id)
            self._results.pop(attempt_id, None)
            if run is None:
                if attempt_id in self._starting:
                    self._cancel_requested.add(attempt_id)
                return
            run.cancelled = True
        self._kill(run)

    def _kill(self, run: ProcessRun) -> None:
        """SIGTERM to the process group, SIGKILL after the grace; never blocks."""
        pid = run.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)

        def escalate() -> None:
            try:
                run.proc.wait(timeout=self.kill_grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                run.proc.wait()
            self.after_kill(run)

        threading.Thread(target=escalate, name=f"taskfabric-kill-{pid}", daemon=True).start()

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancelled = True
            self._kill(run)


__all__ = ["ProcessBackend", "ProcessRun", "describe_exit", "tail"]
