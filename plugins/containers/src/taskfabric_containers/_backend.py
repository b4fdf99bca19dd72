"""The `podman` and `docker` backends: each attempt runs `taskfabric-execute` in a container of
the task's image, through the Docker Engine API (which `podman system service` serves too).

One attempt, one container, named after the attempt id: submitting an attempt whose container
exists (after the engine was killed and the execution resumed) re-attaches to it, or collects
its result if it has ended; it never starts a second one. Cancel and timeout stop the
container (SIGTERM, then SIGKILL after `kill_grace_seconds`). The container's output is the
attempt's log, kept in the blob store beside the node's outputs.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from taskfabric.backends import (
    check_output_folder,
    check_outputs,
    describe_exit,
    oversized_outputs,
    read_regular,
    tail,
    task_options,
)
from taskfabric.core.v1 import execution_pb2, tasks_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    RUNNING,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendContext,
    CheckResult,
    LogLink,
    TaskAttempt,
)
from taskfabric.tasklogs import LOG_LINK_NAME, keep_log, live_log_path
from taskfabric_containers._client import ApiError, ContainerApi, default_url
from taskfabric_containers._limits import LimitError, Limits, describe_bytes, limits_of
from taskfabric_containers._mounts import (
    CodeError,
    CodeSnapshots,
    Mount,
    blob_uris,
    code_root,
    input_mounts,
    socket_mounts,
)
from taskfabric_containers._names import attempt_labels, container_name
from taskfabric_containers._settings import ContainerSettings, check_task_overrides, parse_mount

log = get_logger("taskfabric.containers")

#: PID 1 of every attempt's container: runs the command as its child, passes SIGTERM on (a
#: shell as PID 1 ignores it otherwise) and, when the child was SIGKILLed, says whether the
#: kernel's out-of-memory killer did it (the cgroup's oom_kill counter, v1 or v2): container
#: engines do not all report it (podman 4 on cgroup v1 does not).
SUPERVISOR = r"""
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT
while :; do
    wait "$child"
    rc=$?
    kill -0 "$child" 2>/dev/null || break
done
if [ "$rc" -eq 137 ]; then
    for f in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
        n=$(sed -n 's/^oom_kill //p' "$f" 2>/dev/null)
        if [ -n "$n" ] && [ "$n" -gt 0 ]; then
            echo "taskfabric-containers: killed by the out-of-memory killer (oom_kill $n)" >&2
            break
        fi
    done
fi
exit "$rc"
"""
OOM_MARK = "taskfabric-containers: killed by the out-of-memory killer"
#: Where `taskfabric-execute` works inside the container.
CONTAINER_WORK_DIR = "/tmp/taskfabric-work"


@dataclass
class ContainerRun:
    """One attempt's container, as this backend follows it."""

    attempt: TaskAttempt
    name: str
    #: The attempt's folder on this machine (task, inputs, outputs, error, log).
    folder: Path
    #: The live log file (the container's output as it comes), kept in the blob store at the end.
    log_path: Path
    limits: Limits = field(default_factory=Limits)
    container_id: str = ""
    cancelled: bool = False
    #: Whether the backend wrote the attempt's files to its folder (local stores) or lets the
    #: container read and write the blob store's URIs itself.
    staged: bool = False


class ContainerBackend(Backend[ContainerSettings]):
    """Runs each attempt in a container; see the module docstring and
    docs/plugins/containers.md."""

    settings_model = ContainerSettings
    poll_interval: ClassVar[float | None] = None
    #: Attempts are re-attached after an engine restart: a container is found by its name
    #: (the attempt's handle), running or ended.
    reattaches: ClassVar[bool] = True
    #: A task's container sees only its attempt (see `_mounts`) and none of the engine's
    #: environment but what the settings pass; `isolation_gaps` says when the settings open
    #: more (docs/server.md, "Isolation").
    isolated: ClassVar[bool] = True

    def __init__(self, name: str, settings: ContainerSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.url = settings.url or default_url(self.driver)
        self.api = ContainerApi(
            self.url, timeout=settings.api_timeout, pool_size=max(10, 2 * context.parallelism + 4)
        )
        self._runs: dict[str, ContainerRun] = {}
        self._results: dict[str, AttemptStatus] = {}
        self._starting: set[str] = set()
        self._cancel_requested: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False
        #: Threads stopping cancelled containers: `close` waits for them.
        self._stoppers: list[threading.Thread] = []
        local_root = context.store.local_path(context.store.uri("probe"))
        self._local_store = local_root is not None
        self._snapshots = CodeSnapshots(
            context.work_root / "code-snapshots", skip=(context.data_root, context.work_root)
        )

    # -- isolation ---------------------------------------------------------------------------

    def isolation_gaps(self, task: tasks_pb2.TaskTemplate) -> list[str]:
        gaps: list[str] = []
        section = f"[backends.{self.name}]"
        if not self._local_store:
            gaps.append(
                "the blob store is not on local files, so each container would reach it with "
                "credentials of the whole store (every project's data): give a multi-tenant "
                "server a file:// blob store (a shared file system for several hosts)"
            )
        if "mounts" in self.settings.task_overrides:
            gaps.append(
                f"{section} task_overrides lets tasks add their own mounts (any folder of the "
                'host): remove "mounts" from it'
            )
        secrets = [self.context.data_root.resolve(), self.context.work_root.resolve()]
        for entry in self.settings.mounts:
            source = Path(os.path.realpath(parse_mount(entry)[0]))
            for secret in secrets:
                if (
                    secret == source
                    or secret.is_relative_to(source)
                    or source.is_relative_to(secret)
                ):
                    gaps.append(
                        f"{section} mounts {entry!r} shows the containers {secret} (the data "
                        "root or work folder of every execution): mount a folder outside it"
                    )
                    break
        return gaps

    # -- submit ----------------------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        with self._lock:
            if (
                attempt.attempt_id in self._runs
                or attempt.attempt_id in self._results
                or attempt.attempt_id in self._starting
            ):
                return
            self._starting.add(attempt.attempt_id)
        threading.Thread(
            target=self._guarded,
            args=(attempt,),
            name=f"taskfabric-container-{attempt.attempt}",
            daemon=True,
        ).start()

    def _guarded(self, attempt: TaskAttempt) -> None:
        """`_run`, whose thread is all that watches the attempt: should anything escape it
        (reading the container's documents, a log call), the attempt fails (retryable)
        instead of waiting for ever."""
        try:
            self._run(attempt)
        except BaseException as exc:
            error = AttemptError(
                "ContainerWatchFailed",
                f"backend '{self.name}' stopped watching the attempt's container: {exc!r}"[:2000],
                kind="system",
                retryable=True,
            )
            attempt_id = attempt.attempt_id
            with self._lock:
                self._starting.discard(attempt_id)
                run = self._runs.get(attempt_id)
                if run is not None and run.cancelled:
                    return
                self._results[attempt_id] = AttemptStatus(AttemptPhase.FAILED, error=error)
            if run is not None:  # it may still run: stop it (the engine runs the task again)
                with contextlib.suppress(BaseException):
                    self._stop(run)
            attempt.notify(attempt_id)

    def _task_where(self, attempt: TaskAttempt) -> str:
        return f"task '{attempt.task.id.name}' (node {attempt.node_id})"

    def _image(self, attempt: TaskAttempt) -> str:
        image = attempt.task.container_image or self.settings.image
        if not image:
            raise _SetUpError(
                "NoImage",
                f"{self._task_where(attempt)} names no container image and backend "
                f"'{self.name}' has no default: set `image = \"...\"` in [backends.{self.name}] "
                "or `@task(container_image=...)`; `taskfabric images build SPEC` builds one",
            )
        return image

    def _new_run(self, attempt: TaskAttempt) -> ContainerRun:
        key = attempt.node_id.replace("[", "/").replace("]", "")
        folder = self.context.work_root / attempt.execution_id / key / str(attempt.attempt)
        return ContainerRun(
            attempt=attempt,
            name=container_name(attempt.attempt_id),
            folder=folder,
            log_path=live_log_path(
                self.context.work_root, attempt.execution_id, attempt.node_id, attempt.attempt
            ),
            staged=self._local_store,
        )

    def _run(self, attempt: TaskAttempt) -> None:
        run = self._new_run(attempt)
        try:
            existing = self.api.find(attempt.handle or run.name)
            if existing is not None:
                run.container_id = existing
                log.info(
                    "re-attached to the attempt's container",
                    backend=self.name,
                    attempt_id=attempt.attempt_id,
                    container=run.name,
                )
            else:
                # The name is the handle, recorded before the container exists: an engine
                # killed right after creating it finds it again by that name.
                attempt.record_handle(run.name)
                run.container_id = self._create(run)
        except _SetUpError as exc:
            self._finish_start(run, AttemptStatus(AttemptPhase.FAILED, error=exc.error()))
            return
        except Exception as exc:
            log.exception("container start failed", backend=self.name, container=run.name)
            error = AttemptError(
                type(exc).__name__,
                f"backend '{self.name}' could not start container {run.name} through "
                f"{self.url}: {exc}",
                kind="system",
                retryable=True,
            )
            self._finish_start(run, AttemptStatus(AttemptPhase.FAILED, error=error))
            return
        links = [LogLink("output", run.log_path.as_uri())]
        with self._lock:
            self._starting.discard(attempt.attempt_id)
            self._runs[attempt.attempt_id] = run
            self._results[attempt.attempt_id] = AttemptStatus(AttemptPhase.RUNNING, log_links=links)
            cancel_now = attempt.attempt_id in self._cancel_requested or self._closed
            self._cancel_requested.discard(attempt.attempt_id)
        if cancel_now:
            run.cancelled = True
            self._stop(run)
            return
        attempt.notify(attempt.attempt_id)
        self._follow(run)

    def _finish_start(self, run: ContainerRun, status: AttemptStatus) -> None:
        with self._lock:
            self._starting.discard(run.attempt.attempt_id)
            cancelled = run.attempt.attempt_id in self._cancel_requested
            self._cancel_requested.discard(run.attempt.attempt_id)
            if cancelled:
                return
            self._results[run.attempt.attempt_id] = status
        run.attempt.notify(run.attempt.attempt_id)

    def _create(self, run: ContainerRun) -> str:
        attempt = run.attempt
        where = self._task_where(attempt)
        image = self._image(attempt)
        try:
            run.limits = limits_of(attempt.task, self.settings.cpu, self.settings.memory, where)
        except LimitError as exc:
            raise _SetUpError("InvalidLimits", str(exc)) from exc
        if not self.api.image_exists(image):
            raise _SetUpError(
                "ImageNotFound",
                f"{where}: image {image!r} is not in the image store of {self.url}: build it "
                "(`taskfabric images build SPEC`), load or pull it first; this backend never "
                "pulls",
            )
        mounts: list[Mount] = []
        template_uri = self.context.store.uri(
            "executions", attempt.execution_id, "container-tasks", f"{run.name}.pb"
        )
        inputs_uri = attempt.inputs_uri
        outputs_uri = attempt.outputs_uri
        error_uri = attempt.error_uri
        run.folder.mkdir(parents=True, exist_ok=True)
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        if run.staged:
            # The container gets its own copies of the template and inputs, and writes its
            # outputs or error document next to them; the backend moves them into place.
            template_path = run.folder / "task.pb"
            template_path.write_bytes(attempt.task.SerializeToString(deterministic=True))
            (run.folder / "inputs.pb").write_bytes(attempt.inputs.SerializeToString())
            template_uri = template_path.as_uri()
            inputs_uri = (run.folder / "inputs.pb").as_uri()
            outputs_uri = (run.folder / "outputs.pb").as_uri()
            error_uri = (run.folder / "error.pb").as_uri()
            mounts.append(Mount(run.folder, str(run.folder), read_only=False))
            raw = self.context.store.local_path(attempt.raw_prefix)
            if raw is not None:
                raw.mkdir(parents=True, exist_ok=True)
                mounts.append(Mount(raw, str(raw), read_only=False))
            mounts.extend(input_mounts(self.context.store, blob_uris(attempt.inputs)))
        else:
            self.context.store.put_bytes(
                template_uri, attempt.task.SerializeToString(deterministic=True)
            )
        try:
            own = check_task_overrides(
                task_options(
                    attempt.task,
                    (self.driver,),
                    self.settings.task_overrides,
                    backend=self.name,
                    where=where,
                ),
                where,
            )
        except ValueError as exc:  # TaskOptionsError too
            raise _SetUpError("InvalidBackendOptions", str(exc)) from exc
        env = {k: v for k in self.settings.pass_env if (v := os.environ.get(k)) is not None}
        env.update(self.settings.env)
        env.update(own.env)
        # What the engine gives the attempt's own process: the address of its pool channel
        # and the attempt's secret for it (`taskfabric.hold()` in the task's code). A Unix
        # socket it names is mounted at the same path.
        env.update(attempt.env)
        mounts.extend(socket_mounts(attempt.env.values()))
        if attempt.code_path:
            # A registered workflow's code bundle, extracted on this machine (never the
            # folder its template names: that path was the registering machine's).
            for folder in attempt.code_path:
                mounts.append(Mount(Path(folder), folder, read_only=True))
            env["PYTHONPATH"] = os.pathsep.join(attempt.code_path)
        elif self.settings.code == "mount":
            root = code_root(attempt.task.function)
            if root is not None:
                try:
                    snapshot = self._snapshots.snapshot(root)
                except CodeError as exc:
                    raise _SetUpError("CodeTooLarge", f"{where}: {exc}") from exc
                mounts.append(Mount(snapshot, str(root), read_only=True))
                env["PYTHONPATH"] = str(root)
        for entry in [*self.settings.mounts, *own.mounts]:
            source, target, read_only = parse_mount(entry)
            mounts.append(Mount(Path(source), target, read_only))
        command = [
            self.settings.python, "-m", "taskfabric.execute",
            "--task-template", template_uri,
            "--inputs", inputs_uri,
            "--outputs", outputs_uri,
            "--error", error_uri,
            "--raw-prefix", attempt.raw_prefix,
            "--work-dir", CONTAINER_WORK_DIR,
        ]  # fmt: skip
        labels = dict(self.settings.labels)
        labels.update(attempt_labels(attempt))
        container_id = self.api.create(
            name=run.name,
            image=image,
            entrypoint=["sh", "-c", SUPERVISOR, "taskfabric-container"],
            command=command,
            env=env,
            mounts=mounts,
            labels=labels,
            network=own.network or self.settings.network,
            limits=run.limits,
            user=f"{os.getuid()}:{os.getgid()}",
        )
        self.api.start(container_id)
        log.info(
            "attempt container started",
            backend=self.name,
            attempt_id=attempt.attempt_id,
            container=run.name,
            image=image,
        )
        return container_id

    # -- following a container ---------------------------------------------------------------

    def _follow(self, run: ContainerRun) -> None:
        status: AttemptStatus | None
        try:
            self.api.follow_logs(run.container_id, run.log_path)
            code, oom_killed = self.api.wait(run.container_id)
        except Exception as exc:
            if run.cancelled:
                return
            log.exception("lost the attempt's container", container=run.name)
            status = AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    "ContainerLost",
                    f"lost container {run.name} through {self.url}: {exc}",
                    kind="system",
                    retryable=True,
                ),
            )
        else:
            status = None if run.cancelled else self._status(run, code, oom_killed)
        attempt_id = run.attempt.attempt_id
        with self._lock:
            if run.cancelled or status is None or self._runs.get(attempt_id) is not run:
                self._results.pop(attempt_id, None)
                return
            self._results[attempt_id] = status
        run.attempt.notify(attempt_id)

    def _status(self, run: ContainerRun, code: int, oom_killed: bool) -> AttemptStatus:
        attempt = run.attempt
        store = self.context.store
        links = [LogLink("output", run.log_path.as_uri())]
        kept = keep_log(store, attempt.execution_id, attempt.node_id, attempt.attempt, run.log_path)
        if kept is not None:
            links = [LogLink(LOG_LINK_NAME, kept), *links]
        outputs = run.folder / "outputs.pb"
        error = run.folder / "error.pb"
        if run.staged:
            # What the container left is checked before it is read: it must not point the
            # engine or a later reader at a path it was not given.
            refused = self._refused(run)
            if refused is not None:
                return AttemptStatus(AttemptPhase.FAILED, error=refused, log_links=links)
        limit = self.context.max_output_bytes
        if code == 0 and run.staged:
            too_large = oversized_outputs(attempt, outputs, limit)
            if too_large is not None:
                return AttemptStatus(AttemptPhase.FAILED, error=too_large, log_links=links)
        documents = read_regular(outputs, limit) if code == 0 and run.staged else None
        if documents is not None:
            refused = check_outputs(attempt, documents)
            if refused is not None:
                return AttemptStatus(AttemptPhase.FAILED, error=refused, log_links=links)
            store.put_bytes(attempt.outputs_uri, documents)
            return AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
            )
        if code == 0 and not run.staged and store.exists(attempt.outputs_uri):
            return AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
            )
        if code in (1, 2):
            data = b""
            if run.staged and (found := read_regular(error)) is not None:
                data = found
                store.put_bytes(attempt.error_uri, data)
            elif not run.staged and store.exists(attempt.error_uri):
                data = store.get_bytes(attempt.error_uri)
            if data:
                err = execution_pb2.ExecutionError()
                try:
                    err.ParseFromString(data)
                    return AttemptStatus(
                        AttemptPhase.FAILED, error=AttemptError.from_proto(err), log_links=links
                    )
                except Exception:
                    log.warning("unreadable error document", container=run.name)
        last = tail(run.log_path)
        if code == 137 and (oom_killed or OOM_MARK in last):
            limit = self.api.memory_limit(run.container_id) or run.limits.memory
            described = f"limit {describe_bytes(limit)}" if limit else "no memory limit set"
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    "OutOfMemory",
                    f"killed: out of memory, {described} (container {run.name}); give the "
                    "task more with @task(resources=Resources(memory=...)) or use less",
                    kind="user",
                    retryable=True,
                ),
                log_links=links,
            )
        if code == 0:
            how = "exited with code 0 without writing its outputs"
        else:
            how = describe_exit(code, shell_status=True)
        message = f"the task's container {run.name} {how}"
        if last:
            message += f"; last lines of its output:\n{last}"
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("ContainerDied", message, kind="system", retryable=True),
            log_links=links,
        )

    def _refused(self, run: ContainerRun) -> AttemptError | None:
        raw = self.context.store.local_path(run.attempt.raw_prefix)
        return check_output_folder(raw) if raw is not None and raw.is_dir() else None

    # -- the engine's other calls ------------------------------------------------------------

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
            stopper = threading.Thread(target=self._stop, args=(run,), daemon=True)
            self._stoppers = [t for t in self._stoppers if t.is_alive()]
            self._stoppers.append(stopper)
        stopper.start()

    def abandon(self, attempt_id: str, handle: str) -> None:
        """An earlier engine process's container that no run will re-attach to (the handle
        is its name): stopped (SIGTERM, SIGKILL after the grace) and, with `remove`, removed,
        on a thread of its own (`close` waits for it)."""
        if not handle:
            return

        def stop() -> None:
            try:
                found = self.api.find(handle)
                if found is None:
                    return
                self.api.stop(found, self.settings.kill_grace_seconds)
                log.info(
                    "stopped the container of an attempt no run re-attached to",
                    backend=self.name,
                    attempt_id=attempt_id,
                    container=handle,
                )
                if self.settings.remove:
                    self.api.remove(found)
            except Exception as exc:
                log.warning("could not stop container", container=handle, error=str(exc))

        stopper = threading.Thread(target=stop, daemon=True)
        with self._lock:
            self._stoppers = [t for t in self._stoppers if t.is_alive()]
            self._stoppers.append(stopper)
        stopper.start()

    def _stop(self, run: ContainerRun) -> None:
        """Stop the container (SIGTERM, SIGKILL after the grace) and remove it."""
        try:
            self.api.stop(run.container_id, self.settings.kill_grace_seconds)
            log.info("attempt container stopped", backend=self.name, container=run.name)
            if self.settings.remove:
                self.api.remove(run.container_id)
        except ApiError as exc:
            log.warning("could not stop container", container=run.name, error=str(exc))
        with self._lock:
            if self._runs.get(run.attempt.attempt_id) is run:
                del self._runs[run.attempt.attempt_id]

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)
            run = self._runs.pop(attempt_id, None)
        if run is not None and self.settings.remove and run.container_id:
            threading.Thread(target=self._remove, args=(run,), daemon=True).start()

    def _remove(self, run: ContainerRun) -> None:
        try:
            self.api.remove(run.container_id)
        except ApiError as exc:
            log.warning("could not remove container", container=run.name, error=str(exc))

    def check(self) -> CheckResult:
        try:
            version = self.api.version()
        except Exception as exc:
            return CheckResult(
                False,
                f"no container API answers at {self.url}: {exc}. Start one (podman: "
                f"`podman system service --time=0 {self.url}`) or set url in "
                f"[backends.{self.name}]",
            )
        message = f"{version} at {self.url}"
        image = self.settings.image
        if not image:
            return CheckResult(True, message + "; no default image set (tasks must name one)")
        if not self.api.image_exists(image):
            return CheckResult(
                False,
                f"{message}, but the default image {image!r} is not there: build it with "
                "`taskfabric images build SPEC` or load it",
            )
        return CheckResult(True, f"{message}; default image {image} is there")

    def close(self) -> None:
        with self._lock:
            self._closed = True
            runs = [r for r in self._runs.values() if not r.cancelled]
            for run in runs:
                run.cancelled = True
            stopping = list(self._stoppers)
        threads = [threading.Thread(target=self._stop, args=(r,), daemon=True) for r in runs]
        for thread in threads:
            thread.start()
        for thread in [*threads, *stopping]:
            thread.join(timeout=self.settings.kill_grace_seconds + 10)
        self.api.close()


class _SetUpError(Exception):
    """An attempt that cannot start as set up: a failed attempt, not worth a retry."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def error(self) -> AttemptError:
        return AttemptError(self.code, str(self), kind="user", retryable=False)


class PodmanBackend(ContainerBackend):
    """`driver = "podman"`: podman's Docker-compatible API (`podman system service`)."""

    driver = "podman"


class DockerBackend(ContainerBackend):
    """`driver = "docker"`: a Docker daemon."""

    driver = "docker"


__all__ = ["ContainerBackend", "ContainerRun", "DockerBackend", "PodmanBackend"]
