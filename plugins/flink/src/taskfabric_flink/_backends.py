"""The `flink-local` and `flink-cluster` backends: each attempt is a PyFlink client process
(`taskfabric_flink._driver`, which runs `taskfabric-execute`) in a process group of its own.

`flink-local` runs the attempt's jobs on a mini-cluster inside that process's gateway JVM;
`flink-cluster` submits them to a session cluster, names them after the attempt, links their
pages, cancels them through the REST API when the attempt is cancelled, and after an engine
restart re-attaches to the client, or, when the client is gone too, adopts the attempt's jobs
on the cluster and follows them through the REST API (`_adopt`): never a second job for one
attempt.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlparse

from pydantic import Field, field_validator, model_validator

from taskfabric.backends import ProcessBackend, ProcessIdentity, ProcessRun, describe_exit, tail
from taskfabric.core.v1 import tasks_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    BackendContext,
    BackendSettings,
    CheckResult,
    LogLink,
    PoolRequest,
    TaskAttempt,
)
from taskfabric_flink._adopt import AdoptedJobs
from taskfabric_flink._config import ConfValue, Flink, check_conf, merged_conf
from taskfabric_flink._environment import job_name
from taskfabric_flink._errors import root_cause
from taskfabric_flink._pool import ClusterPool
from taskfabric_flink._rest import TERMINAL_STATES, FlinkRest, FlinkRestError
from taskfabric_flink._streaming import (
    RESTORE_KEY,
    StreamingSettings,
    read_savepoint,
    record_savepoint,
    state_file,
    stop_file,
    streaming_env_value,
)
from taskfabric_flink._watch import LiveJobs, job_links

__all__ = [
    "FlinkBackendSettings",
    "FlinkClusterBackend",
    "FlinkClusterSettings",
    "FlinkLocalBackend",
    "FlinkLocalSettings",
    "job_ids_in_log",
]

log = get_logger("taskfabric.flink")

#: What the Flink CLI prints for every job the client submits.
_SUBMITTED = re.compile(r"Job has been submitted with JobID ([0-9a-f]{32})")
_TAIL_LINES = 20

S = TypeVar("S", bound="FlinkBackendSettings")


def job_ids_in_log(log_path: Path) -> list[str]:
    """The ids of the jobs a client submitted, from its log, in order."""
    try:
        text = log_path.read_text("utf-8", "replace")
    except OSError:
        return []
    return list(dict.fromkeys(_SUBMITTED.findall(text)))


def task_code_path(module_name: str) -> str:
    """The file or top-level package folder of a task's module, for Flink's Python workers
    (`python.files`): they unpickle the task's functions by module name. '' for a module of an
    installed distribution, which the workers' Python has too, or one that is not found."""
    module = sys.modules.get(module_name)
    source = getattr(module, "__file__", None)
    if not source:
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError):
            return ""
        source = spec.origin if spec is not None else None
    if not source or not Path(source).is_file():
        return ""
    path = Path(source).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return ""
    depth = module_name.count(".")
    if path.name == "__init__.py":
        depth += 1
    return str(path.parents[depth - 1]) if depth else str(path)


def check_java(java_home: str = "") -> CheckResult:
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        return CheckResult(
            False, "no Java found (JAVA_HOME or `java` on PATH): Flink needs Java 11, 17 or 21"
        )
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError as exc:
        return CheckResult(False, f"{java} does not run: {exc}")
    first = (out.stderr or out.stdout).splitlines()[:1]
    return CheckResult(True, f"Java: {first[0] if first else java}")


def check_pyflink(python: str) -> CheckResult:
    """Whether `python` imports PyFlink (in another process: importing it is slow)."""
    try:
        out = subprocess.run(
            [python, "-c", "import pyflink.version as v; print(v.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except OSError as exc:
        return CheckResult(False, f"{python} does not run: {exc}")
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["?"])[-1]
        return CheckResult(
            False,
            f"{python} cannot import PyFlink ({last}): install apache-flink there "
            "(docs/plugins/flink.md, 'Install')",
        )
    return CheckResult(True, f"PyFlink {out.stdout.strip()} ({python})")


class FlinkBackendSettings(BackendSettings):
    """Keys every Flink backend takes."""

    #: Flink options every job of this backend gets (a task's own win).
    conf: dict[str, ConfValue] = Field(default_factory=dict)
    #: The Python of the client and of the UDF workers; default: the engine's.
    python: str = ""
    #: The Java installation; default: JAVA_HOME, else `java` on PATH.
    java_home: str = ""
    #: Extra environment variables of the client.
    env: dict[str, str] = Field(default_factory=dict)
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = Field(default=5.0, ge=0)
    #: Where streaming tasks' savepoints go (a path or URI the JobManager and TaskManagers
    #: reach); default: <data_root>/flink-savepoints.
    savepoint_dir: str = ""
    #: A resource pool ([pools.<name>]) of task slots: every attempt holds as many slots as
    #: its parallelism while it runs, so that workflows sharing a cluster do not overrun it.
    pool: str = ""

    @field_validator("conf", mode="before")
    @classmethod
    def _check_conf(cls, conf: Any) -> Any:
        if not isinstance(conf, Mapping):
            return conf  # pydantic says what a table is
        return dict(check_conf(conf, "conf"))

    def flink_conf(self) -> dict[str, str]:
        return {key: str(value) for key, value in self.conf.items()}


class FlinkLocalSettings(FlinkBackendSettings):
    """`[backends.<name>]` of driver `flink-local`."""


class FlinkClusterSettings(FlinkBackendSettings):
    """`[backends.<name>]` of driver `flink-cluster`."""

    #: The session cluster's REST endpoint (the JobManager's web UI), e.g.
    #: http://flink.internal:8081: jobs are submitted there and watched through it.
    rest_url: str

    @field_validator("rest_url")
    @classmethod
    def _check_rest_url(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"rest_url {url!r} is not the http(s) URL of a Flink REST endpoint: write "
                "e.g. http://127.0.0.1:8081"
            )
        return url.rstrip("/")

    #: Seconds between two reads of the state of a job followed through the REST API (one
    #: whose client was lost, adopted on resume).
    job_poll_seconds: float = Field(default=2.0, gt=0)
    #: Seconds a cancelled (or timed out) attempt's streaming job has to stop with a
    #: savepoint before it is cancelled without one.
    savepoint_timeout_seconds: float = Field(default=120.0, gt=0)
    #: Size `pool` from the cluster's task slots, read every so many seconds (`_pool`);
    #: unset: the pool has its configured slots.
    pool_refresh_seconds: float | None = Field(default=None, gt=0)
    #: Task slots the sized pool leaves free (for jobs submitted outside taskfabric).
    pool_margin: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check_pool_sizing(self) -> FlinkClusterSettings:
        if self.pool_refresh_seconds is not None and not self.pool:
            raise ValueError(
                "pool_refresh_seconds sizes the backend's pool from the cluster, but no `pool` "
                'is set: add pool = "<name>" and a [pools.<name>] table'
            )
        return self


class _FlinkBackend(ProcessBackend[S]):
    """What both Flink backends share: the client process and its environment."""

    log_name: ClassVar[str] = "flink-client.log"

    def __init__(self, name: str, settings: S, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.python = settings.python or sys.executable

    def target(self) -> list[str]:
        raise NotImplementedError

    def task_config(self, task: tasks_pb2.TaskTemplate) -> Flink | None:
        try:
            config = self.context.task_type(task.type).config_of(task)
        except Exception:  # not a flink task, or a config the core reports itself
            return None
        return config if isinstance(config, Flink) else None

    def attempt_conf(self, attempt: TaskAttempt) -> dict[str, str]:
        return merged_conf(self.settings.flink_conf(), self.task_config(attempt.task))

    def streaming(self, attempt: TaskAttempt) -> tuple[StreamingSettings, str]:
        """Where the attempt records its savepoint and looks for a stop request, and the
        savepoint it starts from ('' for none)."""
        root = self.context.data_root
        config = self.task_config(attempt.task)
        state = state_file(root, attempt.project, attempt.domain, attempt.task.id.name)
        settings = StreamingSettings(
            state_file=str(state),
            stop_file=str(stop_file(root, attempt.execution_id)),
            savepoint_dir=self.settings.savepoint_dir or str(root / "flink-savepoints"),
            stop_after_seconds=config.stop_after_seconds if config is not None else None,
        )
        return settings, read_savepoint(state)

    def command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        streaming, savepoint = self.streaming(attempt)
        conf = self.attempt_conf(attempt)
        code = task_code_path(attempt.task.function.module)
        if code:
            conf["python.files"] = ",".join(p for p in (code, conf.get("python.files")) if p)
        if savepoint and RESTORE_KEY not in conf:
            conf[RESTORE_KEY] = savepoint
            log.info(
                "the attempt starts from the task's last savepoint",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                savepoint=savepoint,
            )
        return [
            self.python, "-m", "taskfabric_flink._driver",
            "--attempt", attempt.attempt_id,
            "--target", json.dumps(self.target()),
            "--conf", json.dumps(conf, sort_keys=True),
            "--python", self.python,
            "--streaming", streaming_env_value(streaming),
            "--", *self.execute_args(attempt, template_uri, work_dir),
        ]  # fmt: skip

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.settings.env)
        if self.settings.java_home:
            env["JAVA_HOME"] = self.settings.java_home
            env["PATH"] = os.pathsep.join([str(Path(self.settings.java_home) / "bin"), env["PATH"]])
        # Flink's own logs (the gateway's) go to the attempt's folder, not PyFlink's install.
        env.pop("SUBMIT_ARGS", None)
        return self.with_task_path(env)

    def launch_error(self, attempt: TaskAttempt, exc: Exception) -> AttemptStatus | None:
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError(
                "FlinkClientError",
                f"backend '{self.name}' cannot start the Flink client {self.python}: {exc}",
                kind="system",
                retryable=False,
            ),
        )

    def running_links(self, run: ProcessRun) -> list[LogLink]:
        return [LogLink("flink-client", run.log_path.as_uri())]

    def log_links(self, run: ProcessRun) -> list[LogLink]:
        return [LogLink("flink-client", run.log_path.as_uri())]

    def crash_error(self, run: ProcessRun, code: int | None) -> AttemptError:
        """The root cause from the client's log, not the whole Java stack."""
        text = ""
        with contextlib.suppress(OSError):
            text = run.log_path.read_text("utf-8", "replace")
        how = (
            "exited with code 0 without writing its outputs"
            if code == 0
            else describe_exit(code)
            if code is not None
            else "ended without writing its outputs or an error document"
        )
        message = f"the Flink client of backend '{self.name}' {how}"
        cause = root_cause(text)
        if cause is not None:
            message += f": {cause[1]}"
        return AttemptError(
            "FlinkClientDied",
            message,
            kind="system",
            retryable=True,
            traceback=f"last lines of the client log:\n{tail(run.log_path, _TAIL_LINES)}",
        )

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        if not self.settings.pool:
            return []
        conf = merged_conf(self.settings.flink_conf(), self.task_config(task))
        try:
            slots = int(conf.get("parallelism.default", "1"))
        except ValueError:
            slots = 1
        return [PoolRequest(self.settings.pool, max(1, slots))]

    def check(self) -> CheckResult:
        java = check_java(self.settings.java_home)
        if not java.ok:
            return CheckResult(False, f"backend '{self.name}': {java.message}")
        pyflink = check_pyflink(self.python)
        if not pyflink.ok:
            return CheckResult(False, f"backend '{self.name}': {pyflink.message}")
        return CheckResult(True, f"{pyflink.message}; {java.message}")


class FlinkLocalBackend(_FlinkBackend[FlinkLocalSettings]):
    """Each attempt's jobs run on a Flink mini-cluster inside its own client process (the
    gateway's JVM): nothing to install but PyFlink and Java. Cancelling an attempt kills
    the process group, mini-cluster included."""

    driver: ClassVar[str] = "flink-local"
    settings_model: ClassVar[type[BackendSettings]] = FlinkLocalSettings

    def target(self) -> list[str]:
        return ["-t", "local"]

    def check(self) -> CheckResult:
        found = super().check()
        if not found.ok:
            return found
        return CheckResult(True, f"a mini-cluster per attempt; {found.message}")


class FlinkClusterBackend(_FlinkBackend[FlinkClusterSettings]):
    """Each attempt's jobs run on a Flink session cluster (`rest_url`), named
    `taskfabric-<attempt id>`; see the module docstring."""

    driver: ClassVar[str] = "flink-cluster"
    settings_model: ClassVar[type[BackendSettings]] = FlinkClusterSettings

    def __init__(self, name: str, settings: FlinkClusterSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.rest = FlinkRest(settings.rest_url)
        self.adopted = AdoptedJobs(name, self.rest, settings.job_poll_seconds)
        self.live = LiveJobs(name, self.rest, settings.job_poll_seconds)
        self.sized_pool: ClusterPool | None = None
        if settings.pool and settings.pool_refresh_seconds is not None:
            self.sized_pool = ClusterPool(
                name,
                settings.pool,
                self.rest,
                margin=settings.pool_margin,
                every=settings.pool_refresh_seconds,
                set_capacity=context.set_pool_capacity,
            )

    def target(self) -> list[str]:
        parsed = urlparse(self.settings.rest_url)
        port = parsed.port or (443 if parsed.scheme == "https" else 8081)
        return ["-m", f"{parsed.hostname}:{port}"]

    # -- the attempt's jobs --------------------------------------------------------------

    def attempt_jobs(self, attempt_id: str, log_path: Path | None = None) -> list[dict[str, Any]]:
        """The cluster's jobs of an attempt: named after it, or listed in its client's log."""
        ids = set(job_ids_in_log(log_path)) if log_path is not None else set()
        name = job_name(attempt_id)
        return [j for j in self.rest.jobs() if j.get("name") == name or j.get("jid") in ids]

    def cancel_jobs(self, attempt_id: str, log_path: Path | None = None) -> list[str]:
        """Cancel the attempt's jobs that have not ended; their ids."""
        cancelled: list[str] = []
        for job in self.attempt_jobs(attempt_id, log_path):
            if job.get("state") in TERMINAL_STATES:
                continue
            jid = str(job["jid"])
            try:
                self.rest.cancel(jid)
                cancelled.append(jid)
            except FlinkRestError as exc:
                log.warning("cannot cancel a job", backend=self.name, jid=jid, error=str(exc))
        if cancelled:
            log.info("jobs cancelled", backend=self.name, attempt_id=attempt_id, jobs=cancelled)
        return cancelled

    # -- the backend ---------------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        if attempt.handle and not self._client_runs(attempt) and self._adopt(attempt):
            return
        super().submit(attempt)
        self.live.watch(attempt)  # its jobs, from the REST API, while its client runs

    def _adopt(self, attempt: TaskAttempt) -> bool:
        """The client an earlier engine process started is gone. When it wrote no outcome
        and the attempt's jobs are on the cluster, follow them through the REST API (`_adopt`
        module): True. False leaves the attempt to the base class, which reads the outcome
        the client wrote, or reports the attempt interrupted when no job of it exists."""
        store = self.context.store
        if store.exists(attempt.outputs_uri) or store.exists(attempt.error_uri):
            return False  # read back as usual (log_links cancels a job left running)
        log_path = self.work_dir(attempt) / self.log_name
        try:
            jobs = self.attempt_jobs(attempt.attempt_id, log_path)
        except FlinkRestError as exc:
            log.warning(
                "cannot look for the jobs of an attempt whose client is gone",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                error=str(exc),
            )
            return False
        if not jobs:
            return False
        if self.adopted.status(attempt.attempt_id) is not None:
            return True  # submitted again while followed: nothing to do
        self.adopted.adopt(attempt, jobs, [LogLink("flink-client", log_path.as_uri())])
        return True

    def poll(self, attempt_id: str) -> AttemptStatus:
        status = self.adopted.status(attempt_id)
        if status is not None:
            return status
        status = super().poll(attempt_id)
        view = self.live.view(attempt_id)
        if status.phase is not AttemptPhase.RUNNING or view is None:
            return status
        # The client runs: what its jobs do is the JobManager's word (`_watch`).
        return AttemptStatus(
            AttemptPhase.RUNNING,
            message=view.message(),
            log_links=[*status.log_links, *job_links(self.settings.rest_url, list(view.jobs))],
        )

    def cancel(self, attempt_id: str) -> None:
        self.live.forget(attempt_id)
        if not self.adopted.cancel(attempt_id, self.rest.cancel):
            super().cancel(attempt_id)

    def release(self, attempt_id: str) -> None:
        self.live.forget(attempt_id)
        self.adopted.release(attempt_id)
        super().release(attempt_id)

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        requests = super().pool_requests(task)
        if requests and self.sized_pool is not None:
            self.sized_pool.start()  # the pool is sized before its first request
        return requests

    def close(self) -> None:
        if self.sized_pool is not None:
            self.sized_pool.close()
        self.live.close()
        self.adopted.close()
        super().close()

    def _client_runs(self, attempt: TaskAttempt) -> bool:
        identity = ProcessIdentity.parse(attempt.handle)
        if identity is None:  # provisional: the pid file says whether it started
            pid_file = self.work_dir(attempt) / "process.pid"
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid, start, boot = pid_file.read_text().split()[:3]
                identity = ProcessIdentity(int(pid), int(start), boot)
        return identity is not None and identity.running()

    def running_links(self, run: ProcessRun) -> list[LogLink]:
        return [
            LogLink("flink-client", run.log_path.as_uri()),
            LogLink("flink-jobs", f"{self.settings.rest_url}/#/job/running"),
        ]

    def log_links(self, run: ProcessRun) -> list[LogLink]:
        """The client log and the attempt's jobs. Called once the client has ended: a job of
        the attempt still running then has no owner left (a task that submitted a job and
        did not wait for it, a client that failed), so it is cancelled first."""
        links = [LogLink("flink-client", run.log_path.as_uri())]
        try:
            self.cancel_jobs(run.attempt.attempt_id, run.log_path)
            jobs = self.attempt_jobs(run.attempt.attempt_id, run.log_path)
        except FlinkRestError as exc:
            log.debug("no job links", backend=self.name, error=str(exc))
            return links
        for job in jobs:
            jid = job["jid"]
            links.append(LogLink("flink-job", f"{self.settings.rest_url}/#/job/completed/{jid}"))
            if job.get("state") == "FAILED":
                links.append(
                    LogLink("flink-exceptions", f"{self.settings.rest_url}/jobs/{jid}/exceptions")
                )
        return links

    def crash_error(self, run: ProcessRun, code: int | None) -> AttemptError:
        error = super().crash_error(run, code)
        if root_cause(tail(run.log_path, 400)) is not None:
            return error
        # Nothing in the client's log: the JobManager's exception history may say more.
        with contextlib.suppress(FlinkRestError):
            for job in self.attempt_jobs(run.attempt.attempt_id, run.log_path):
                if job.get("state") == "FAILED":
                    history = self.rest.exceptions(str(job["jid"]))
                    cause = root_cause(str(history.get("root-exception", "")))
                    if cause is not None:
                        return AttemptError(
                            error.code,
                            f"{error.message}: job {job['jid']}: {cause[1]}",
                            kind=error.kind,
                            retryable=error.retryable,
                            traceback=error.traceback,
                        )
        return error

    def after_kill(self, run: ProcessRun) -> None:
        """The client is gone (a cancel, a timeout); its jobs run on in the cluster until
        stopped here. A running streaming job stops with a savepoint, recorded as the task's
        state (its next attempt starts from it); the others, or one whose savepoint fails,
        are cancelled."""
        attempt = run.attempt
        try:
            for job in self.attempt_jobs(attempt.attempt_id, run.log_path):
                if job.get("jobType") == "STREAMING" and job.get("state") == "RUNNING":
                    self._stop_with_savepoint(attempt, str(job["jid"]))
            self.cancel_jobs(attempt.attempt_id, run.log_path)
        except FlinkRestError as exc:
            log.warning(
                "cannot stop the jobs of a cancelled attempt",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                error=str(exc),
            )

    def _stop_with_savepoint(self, attempt: TaskAttempt, jid: str) -> None:
        streaming, _ = self.streaming(attempt)
        try:
            savepoint = self.rest.stop_with_savepoint(
                jid, streaming.savepoint_dir, timeout=self.settings.savepoint_timeout_seconds
            )
        except FlinkRestError as exc:
            log.warning(
                "a streaming job of a cancelled attempt did not stop with a savepoint; it is "
                "cancelled",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                jid=jid,
                error=str(exc),
            )
            return
        record_savepoint(Path(streaming.state_file), savepoint, attempt.attempt_id)
        log.info(
            "a streaming job of a cancelled attempt stopped with a savepoint, recorded as the "
            "task's state",
            backend=self.name,
            attempt_id=attempt.attempt_id,
            jid=jid,
            savepoint=savepoint,
        )

    def check(self) -> CheckResult:
        found = super().check()
        if not found.ok:
            return found
        try:
            overview = self.rest.overview()
        except FlinkRestError as exc:
            return CheckResult(
                False,
                f"backend '{self.name}': the Flink REST API does not answer ({exc}): start the "
                "session cluster, or fix `rest_url`",
            )
        managers = int(overview.get("taskmanagers", 0))
        slots = int(overview.get("slots-total", 0))
        if managers == 0 or slots == 0:
            return CheckResult(
                False,
                f"backend '{self.name}': the cluster at {self.settings.rest_url} has {managers} "
                f"task managers and {slots} task slots: jobs would wait for slots forever",
            )
        sized = ""
        if self.sized_pool is not None:
            with contextlib.suppress(FlinkRestError):
                sized = (
                    f"; pool '{self.sized_pool.pool}' sized from the cluster: "
                    f"{self.sized_pool.read()} slots now, read every "
                    f"{self.sized_pool.every:g}s"
                )
        return CheckResult(
            True,
            f"Flink {overview.get('flink-version', '?')} at {self.settings.rest_url}: "
            f"{managers} task managers, {overview.get('slots-available', '?')} of {slots} task "
            f"slots free{sized}; {found.message}",
        )
