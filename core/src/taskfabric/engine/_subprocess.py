"""The built-in `subprocess` backend: each attempt in a fresh Python process.

The process runs `python -m taskfabric.execute`, the same entrypoint that containers, Spark
and AWS Batch jobs run. A task that segfaults, calls `os._exit` or eats all its memory fails
its attempt and nothing else; a timeout or an abort kills the whole process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

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
    CheckResult,
    LogLink,
    TaskAttempt,
)

log = get_logger("taskfabric.subprocess")

_LOG_TAIL_LINES = 20


class SubprocessSettings(BackendSettings):
    """`[backends.<name>]` of driver `subprocess`."""

    #: Interpreter that runs the attempts; default: the engine's own.
    python: str = ""
    #: Extra environment variables for the task processes.
    env: dict[str, str] = {}
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = 5.0


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class _Run:
    def __init__(self, attempt: TaskAttempt, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.attempt = attempt
        self.proc = proc
        self.log_path = log_path
        self.cancelled = False


class SubprocessBackend(Backend[SubprocessSettings]):
    """Runs each attempt as `python -m taskfabric.execute` in its own process group."""

    driver = "subprocess"
    settings_model = SubprocessSettings
    poll_interval = None

    def __init__(self, name: str, settings: SubprocessSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.python = settings.python or sys.executable
        self._runs: dict[str, _Run] = {}
        self._results: dict[str, AttemptStatus] = {}
        self._starting: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._lock = threading.Lock()

    def _command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        return [
            self.python, "-m", "taskfabric.execute",
            "--task-template", template_uri,
            "--inputs", attempt.inputs_uri,
            "--outputs", attempt.outputs_uri,
            "--error", attempt.error_uri,
            "--raw-prefix", attempt.raw_prefix,
            "--work-dir", str(work_dir),
        ]  # fmt: skip

    def submit(self, attempt: TaskAttempt) -> None:
        ctx = self.context
        with self._lock:
            if (
                attempt.attempt_id in self._runs
                or attempt.attempt_id in self._results
                or attempt.attempt_id in self._starting
            ):
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
            log_path = work_dir / "output.log"
            env = dict(os.environ)
            env.update(self.settings.env)
            # The task's module is found the way the engine found it: from the working folder.
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p
            )
            with log_path.open("wb") as out:
                proc = subprocess.Popen(
                    self._command(attempt, template_uri, work_dir),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
        finally:
            with self._lock:
                self._starting.discard(attempt.attempt_id)
        run = _Run(attempt, proc, log_path)
        with self._lock:
            self._runs[attempt.attempt_id] = run
            cancel_now = attempt.attempt_id in self._cancel_requested
            self._cancel_requested.discard(attempt.attempt_id)
        if cancel_now:
            run.cancelled = True
            self._kill(run)
        threading.Thread(
            target=self._wait, args=(run,), name=f"taskfabric-wait-{proc.pid}", daemon=True
        ).start()

    def _wait(self, run: _Run) -> None:
        code = run.proc.wait()
        status = self._status(run, code)
        with self._lock:
            self._runs.pop(run.attempt.attempt_id, None)
            if run.cancelled:
                return
            self._results[run.attempt.attempt_id] = status
        run.attempt.notify(run.attempt.attempt_id)

    def _status(self, run: _Run, code: int) -> AttemptStatus:
        attempt = run.attempt
        links = [LogLink("output", run.log_path.as_uri())]
        if code == 0:
            return AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
            )
        store = self.context.store
        if code in (1, 2) and store.exists(attempt.error_uri):
            err = execution_pb2.ExecutionError()
            try:
                err.ParseFromString(store.get_bytes(attempt.error_uri))
                return AttemptStatus(
                    AttemptPhase.FAILED, error=AttemptError.from_proto(err), log_links=links
                )
            except Exception:
                log.warning("unreadable error document", uri=attempt.error_uri)
        tail = _tail(run.log_path)
        message = f"the task process {_describe_exit(code)}"
        if tail:
            message += f"; last lines of its output:\n{tail}"
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("ProcessDied", message, kind="system", retryable=True),
            log_links=links,
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

    def _kill(self, run: _Run) -> None:
        pid = run.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)

        def escalate() -> None:
            try:
                run.proc.wait(timeout=self.settings.kill_grace_seconds)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

        threading.Thread(target=escalate, name=f"taskfabric-kill-{pid}", daemon=True).start()

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)

    def check(self) -> CheckResult:
        try:
            out = subprocess.run(
                [
                    self.python,
                    "-c",
                    "import taskfabric.execute, sys; print(sys.version.split()[0])",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CheckResult(False, f"cannot run {self.python}: {exc}")
        if out.returncode != 0:
            return CheckResult(
                False,
                f"{self.python} cannot import taskfabric: {out.stderr.strip().splitlines()[-1:]}",
            )
        return CheckResult(True, f"{self.python} (Python {out.stdout.strip()}) runs taskfabric")

    def close(self) -> None:
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.cancelled = True
            self._kill(run)
