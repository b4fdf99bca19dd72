"""`ProcessBackend`: the base of backends that run each attempt as a local process (which may
itself drive a remote engine: `spark-submit`, a cloud CLI) through `taskfabric-execute`.

It owns the bookkeeping those backends share: the attempt's task template put in the blob
store, a work folder and a log file per attempt, one process group per attempt, a thread that
waits for it, the exit read back as the outputs or the error document `taskfabric-execute`
wrote (or as a crash with the end of the log), and a cancel that sends SIGTERM to the group,
then SIGKILL after a grace period. A subclass says which command to run (`command`) and may
change the environment, the log links, what a crash says and what else a kill does.

It also re-attaches (`Backend.reattaches`): each attempt's handle is its process's identity
(pid, start time, boot), recorded with `attempt.record_handle` as the process starts, and
written by the process itself to a pid file in the attempt's work folder. Submitted again with
that handle by a later engine process, it adopts the process when it still runs (watching it
through /proc, since it cannot `wait()` for a process it did not start), reads the outputs or
error document when it has ended, and reports the attempt interrupted when it ended without
either; it never starts a second process for an attempt whose process was started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import ClassVar, Protocol, TypeVar

from taskfabric.backends._paths import attempt_work_dir, node_key
from taskfabric.backends._pids import (
    STARTING_PREFIX,
    ProcessIdentity,
    check_executable,
    read_pid_file,
    starting_handle,
    wrap,
)
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

__all__ = ["ProcessBackend", "ProcessRun", "StartedProcess", "describe_exit", "tail"]

log = get_logger("taskfabric.backends")

SettingsT = TypeVar("SettingsT", bound=BackendSettings)

#: The pid file the attempt's process writes in its work folder (see `_pids.wrap`).
PID_FILE = "process.pid"

#: How long `close` waits, beyond the kill grace, for killed processes to be reaped (a bound,
#: not a margin: SIGKILL ends a process at once unless it is stuck in the kernel).
CLOSE_REAP_SECONDS = 10.0


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


def describe_exit(code: int | None, *, shell_status: bool = False) -> str:
    """'exited with code 3', 'was killed by SIGKILL'; for None (a process an earlier engine
    process started, whose exit status nobody can read now) 'ended'.

    `code` is a `Popen.returncode` (negative: killed by that signal), or, with
    `shell_status`, an exit status as a shell, a container runtime or Kubernetes reports it
    (above 128: killed by signal `code - 128`)."""
    if code is None:
        return "ended"
    if shell_status and code > 128:
        code = 128 - code
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


class StartedProcess(Protocol):
    """What `ProcessRun` needs of a process it started (a `Popen`, or a sandbox fork
    server's `ForkedProcess`)."""

    pid: int

    def wait(self) -> int: ...


class ProcessRun:
    """One attempt's process: started by this backend (`proc` is its `Popen`), or adopted
    from an earlier engine process (`proc` is None; `adopted` is true)."""

    def __init__(
        self,
        attempt: TaskAttempt,
        proc: StartedProcess | None,
        log_path: Path,
        identity: ProcessIdentity | None = None,
    ) -> None:
        self.attempt = attempt
        self.proc = proc
        self.log_path = log_path
        self.identity = identity
        self.cancelled = False
        #: Set once the process has ended (and, for a started one, been reaped).
        self.ended = threading.Event()

    @property
    def pid(self) -> int:
        if self.proc is not None:
            return self.proc.pid
        assert self.identity is not None
        return self.identity.pid

    @property
    def adopted(self) -> bool:
        """Started by an earlier engine process: no exit status can be read."""
        return self.proc is None

    @property
    def work_dir(self) -> Path:
        return self.log_path.parent


class ProcessBackend(Backend[SettingsT]):
    """Runs each attempt as `command(...)` in a process group of its own; see the module
    docstring. Subclasses implement `command` and may override `environment`, `log_links`,
    `running_links`, `crash_error`, `launch_error`, `after_kill`, `gather` and
    `kill_grace_seconds`."""

    poll_interval: ClassVar[float | None] = None
    reattaches: ClassVar[bool] = True
    #: `_start` records a provisional handle before the process exists
    handle_before_start: ClassVar[bool] = True
    #: The name of the attempt's log file in its work folder.
    log_name: ClassVar[str] = "output.log"

    def __init__(self, name: str, settings: SettingsT, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self._runs: dict[str, ProcessRun] = {}
        self._results: dict[str, AttemptStatus] = {}
        self._starting: set[str] = set()
        self._cancel_requested: set[str] = set()
        #: The threads that kill cancelled processes (SIGTERM, then SIGKILL after the
        #: grace): `close` waits for them, since they are daemons that die with the engine.
        self._killers: list[threading.Thread] = []
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

    def work_dir(self, attempt: TaskAttempt) -> Path:
        """The attempt's own folder (the same in every engine process: `attempt_work_dir`)."""
        return attempt_work_dir(self.context, attempt)

    def log_links(self, run: ProcessRun) -> list[LogLink]:
        """Links of an ended attempt (its log file by default)."""
        return [LogLink("output", run.log_path.as_uri())]

    def running_links(self, run: ProcessRun) -> list[LogLink]:
        """Links to follow a running attempt, reported as soon as its process starts (its
        log file, as it is written, by default)."""
        return [LogLink("output", run.log_path.as_uri())]

    def crash_error(self, run: ProcessRun, code: int | None) -> AttemptError:
        """The error of a process that ended without outputs or an error document. `code` is
        None for an adopted process (`run.adopted`), whose exit status cannot be read."""
        how = "exited with code 0 without writing its outputs" if code == 0 else describe_exit(code)
        if code is None:
            how += " without writing its outputs or an error document"
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

    def gather(self, run: ProcessRun) -> AttemptError | None:
        """Called once the attempt's process has ended, before its outputs or error document
        are read at `attempt.outputs_uri` / `attempt.error_uri`: a backend whose process wrote
        them elsewhere (a sandbox's own folder) checks them and moves them there. An error
        returned fails the attempt with it, whatever the process wrote."""
        return None

    # -- the backend ---------------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        with self._lock:
            if attempt.attempt_id in self._runs or attempt.attempt_id in self._results:
                return
            if attempt.attempt_id in self._starting:
                return
            self._starting.add(attempt.attempt_id)
        try:
            work_dir = self.work_dir(attempt)
            log_path = work_dir / self.log_name
            found = self._reattach(attempt, log_path) if attempt.handle else None
            if isinstance(found, AttemptStatus):
                with self._lock:
                    self._starting.discard(attempt.attempt_id)
                    self._cancel_requested.discard(attempt.attempt_id)
                    self._results[attempt.attempt_id] = found
                attempt.notify(attempt.attempt_id)
                return
            run = found if found is not None else self._start(attempt, work_dir, log_path)
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
            target=self._wait, args=(run,), name=f"taskfabric-wait-{run.pid}", daemon=True
        ).start()

    def _start(self, attempt: TaskAttempt, work_dir: Path, log_path: Path) -> ProcessRun:
        ctx = self.context
        prefix = ctx.store.uri("executions", attempt.execution_id)
        template_uri = ctx.literals.put(
            prefix,
            f"nodes/{node_key(attempt.node_id)}/task.pb",
            attempt.task.SerializeToString(deterministic=True),
        )
        work_dir.mkdir(parents=True, exist_ok=True)
        command = self.command(attempt, template_uri, work_dir)
        env = {**self.environment(), **attempt.env}
        if attempt.code_path:
            # The task's code (a registered bundle) is found first, as the engine found it.
            env["PYTHONPATH"] = os.pathsep.join(
                [*attempt.code_path, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)]
            )
        # The log is followed live (`executions logs --follow`) and keeps stdout and stderr
        # in the order they were written: Python must not buffer stdout in blocks.
        env.setdefault("PYTHONUNBUFFERED", "1")
        check_executable(command[0], env)
        pid_file = work_dir / PID_FILE
        pid_file.unlink(missing_ok=True)
        # Recorded before the process exists: an engine killed before it records the real
        # handle leaves this one, and the next finds the process by its pid file.
        attempt.record_handle(starting_handle())
        with log_path.open("wb") as out:
            proc = subprocess.Popen(
                wrap(command, pid_file),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        # Our child: its /proc entry is there until we reap it. Its full handle is recorded by
        # the thread that waits for it (`_wait`), off the engine's loop thread.
        run = ProcessRun(attempt, proc, log_path, ProcessIdentity.of(proc.pid))
        log.info(
            "attempt process started",
            backend=self.name,
            attempt_id=attempt.attempt_id,
            pid=proc.pid,
        )
        return run

    def _reattach(self, attempt: TaskAttempt, log_path: Path) -> ProcessRun | AttemptStatus | None:
        """Find the process an earlier engine process started for `attempt` (by its handle,
        or by the pid file when the handle is provisional): a ProcessRun to watch when it
        runs, its outcome when it ended, None when it never started."""
        identity = ProcessIdentity.parse(attempt.handle)
        if identity is None:
            if not attempt.handle.startswith(STARTING_PREFIX):
                log.warning(
                    "handle not recorded by a process backend; looking for the pid file",
                    backend=self.name,
                    attempt_id=attempt.attempt_id,
                    handle=attempt.handle,
                )
            identity = read_pid_file(log_path.parent / PID_FILE)
            if identity is None:
                return None  # no process ever ran for this attempt: start it
        run = ProcessRun(attempt, None, log_path, identity)
        if identity.running():
            log.info(
                "re-attached to the attempt's process",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                pid=identity.pid,
            )
            return run
        run.ended.set()
        links = self._links(run)
        status = self._documents(run, None, links)
        if status is not None:
            log.info(
                "the attempt's process ended while no engine watched it; its outcome is read",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                phase=status.phase.value,
            )
            return status
        message = (
            f"the attempt's process (pid {identity.pid}, started by an earlier engine process) "
            "ended while no engine watched it, without writing its outputs or an error document"
        )
        last = tail(log_path)
        if last:
            message += f"; last lines of its output:\n{last}"
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("Interrupted", message, kind="system", retryable=True),
            log_links=links,
        )

    def _wait(self, run: ProcessRun) -> None:
        code: int | None = None
        if run.proc is not None:
            if run.identity is not None:
                try:
                    run.attempt.record_handle(run.identity.handle)
                except Exception as exc:  # the provisional handle and the pid file still work
                    log.warning(
                        "could not record the attempt's process handle",
                        backend=self.name,
                        attempt_id=run.attempt.attempt_id,
                        error=str(exc),
                    )
            code = run.proc.wait()
        else:
            assert run.identity is not None
            run.identity.wait_gone()
        run.ended.set()
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

    def _links(self, run: ProcessRun) -> list[LogLink]:
        """The links of an ended attempt: its log kept in the blob store, then `log_links`."""
        attempt = run.attempt
        links = self.log_links(run)
        kept = keep_log(
            self.context.store, attempt.execution_id, attempt.node_id, attempt.attempt, run.log_path
        )
        return [LogLink(LOG_LINK_NAME, kept), *links] if kept is not None else links

    def _documents(
        self, run: ProcessRun, code: int | None, links: list[LogLink]
    ) -> AttemptStatus | None:
        """The outcome `taskfabric-execute` wrote (outputs or error document), or None."""
        refused = self.gather(run)
        if refused is not None:
            return AttemptStatus(AttemptPhase.FAILED, error=refused, log_links=links)
        attempt = run.attempt
        store = self.context.store
        if code in (0, None) and store.exists(attempt.outputs_uri):
            return AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
            )
        if code in (1, 2, None) and store.exists(attempt.error_uri):
            err = execution_pb2.ExecutionError()
            try:
                err.ParseFromString(store.get_bytes(attempt.error_uri))
                return AttemptStatus(
                    AttemptPhase.FAILED, error=AttemptError.from_proto(err), log_links=links
                )
            except Exception:
                log.warning("unreadable error document", uri=attempt.error_uri)
        return None

    def _status(self, run: ProcessRun, code: int | None) -> AttemptStatus:
        links = self._links(run)
        status = self._documents(run, code, links)
        if status is not None:
            return status
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

    def _signal(self, run: ProcessRun, sig: signal.Signals) -> None:
        """`sig` to the run's process group. An adopted group is signalled only while its
        leader is the process the handle names: its pid may belong to another by now."""
        if run.adopted and (run.identity is None or not run.identity.running()):
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(run.pid, sig)

    def _kill(self, run: ProcessRun) -> None:
        """SIGTERM to the process group, SIGKILL after the grace; never blocks."""
        self._signal(run, signal.SIGTERM)

        def escalate() -> None:
            if not run.ended.wait(self.kill_grace_seconds):
                self._signal(run, signal.SIGKILL)
                run.ended.wait()
            self.after_kill(run)

        killer = threading.Thread(target=escalate, name=f"taskfabric-kill-{run.pid}", daemon=True)
        with self._lock:
            self._killers = [t for t in self._killers if t.is_alive()]
            self._killers.append(killer)
        killer.start()

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)

    def abandon(self, attempt_id: str, handle: str) -> None:
        """Stop the process group that an earlier engine process started for an attempt no
        run will re-attach to: SIGTERM, SIGKILL after `kill_grace_seconds`, without
        blocking (`close` waits for it). Only while the process the handle names still runs
        (its pid may be another's by now); a provisional handle (the engine stopped as the
        process started) names none, and is left."""
        identity = ProcessIdentity.parse(handle)
        if identity is None or not identity.running():
            return
        log.info(
            "stopping the process of an attempt no run re-attached to",
            backend=self.name,
            attempt_id=attempt_id,
            pid=identity.pid,
        )

        def signal_group(sig: signal.Signals) -> None:
            if identity.running():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(identity.pid, sig)

        def escalate() -> None:
            gone = threading.Event()
            deadline = time.monotonic() + self.kill_grace_seconds
            while identity.running() and time.monotonic() < deadline:
                gone.wait(0.05)
            signal_group(signal.SIGKILL)

        signal_group(signal.SIGTERM)
        killer = threading.Thread(target=escalate, name=f"taskfabric-kill-{identity.pid}")
        killer.daemon = True
        with self._lock:
            self._killers = [t for t in self._killers if t.is_alive()]
            self._killers.append(killer)
        killer.start()

    def close(self) -> None:
        """Kill what still runs, and wait until every killed process has ended: SIGTERM,
        SIGKILL after `kill_grace_seconds` (also for attempts cancelled just before, a
        timeout at the end of a run). The killing threads are daemons: an engine process that
        exits right after `close` would otherwise leave a process that ignores SIGTERM (and
        its process group) running."""
        with self._lock:
            runs = [run for run in self._runs.values() if not run.cancelled]
            for run in runs:
                run.cancelled = True
        for run in runs:
            self._kill(run)
        with self._lock:
            killers = list(self._killers)
        deadline = time.monotonic() + self.kill_grace_seconds + CLOSE_REAP_SECONDS
        for killer in killers:
            killer.join(max(0.0, deadline - time.monotonic()))
        left = [k.name for k in killers if k.is_alive()]
        if left:
            log.warning("attempt processes not reaped at close", backend=self.name, killers=left)
