"""The `kubernetes` backend: each attempt is a Pod running `taskfabric-execute` in the task's
image.

One attempt, one pod, named after the attempt id, in the namespace of the execution's project
and domain. Its state comes from one watch per namespace (with a periodic re-list), which
calls the attempt's `notify`; no pod is polled on its own. The pod's name is the attempt's
handle, recorded before the pod exists: after `kill -9` of the engine and a resume, the same
attempt finds its pod by that name (running or ended) and never starts a second one. Cancel
and timeout delete the pod; a finished pod is deleted once its end is recorded (or kept for
`keep_finished_pods_seconds`). The pod's log is the attempt's log.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from taskfabric.backends import (
    REFUSED,
    check_output_folder,
    check_outputs,
    describe_exit,
    node_key,
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
    PoolRequest,
    TaskAttempt,
)
from taskfabric.tasklogs import LOG_LINK_NAME, keep_log, live_log_path
from taskfabric_kubernetes._access import SECRET_KEY, PresignedAccess, presigned_access
from taskfabric_kubernetes._api import KubeApi, KubeApiError
from taskfabric_kubernetes._names import (
    ANNOTATION_ATTEMPT_ID,
    attempt_labels,
    backend_selector,
    namespace_of,
    pod_name,
)
from taskfabric_kubernetes._pods import (
    POD_WORK_DIR,
    TASK_CONTAINER,
    HostMount,
    pod_manifest,
    task_templates,
)
from taskfabric_kubernetes._settings import KubernetesSettings, check_task_overrides
from taskfabric_kubernetes._staging import blob_uris, code_root, input_mounts, socket_mounts
from taskfabric_kubernetes._status import PodState, assess, has_deadline
from taskfabric_kubernetes._watch import NamespaceWatch

log = get_logger("taskfabric.kubernetes")

#: The handle recorded before the pod is created: "pending:NAMESPACE/NAME".
PENDING = "pending:"
#: Seconds between two tries to create a pod that the namespace's ResourceQuota refused.
QUOTA_RETRY_SECONDS = 2.0


@dataclass
class PodRun:
    """One attempt's pod, as this backend follows it."""

    attempt: TaskAttempt
    namespace: str
    name: str
    #: The attempt's folder on this machine (task, inputs, outputs or error; host-path mode).
    folder: Path
    #: Where the pod's log is written once it ended, kept in the blob store.
    log_path: Path
    staged: bool
    image: str = ""
    uid: str = ""
    #: When (time.monotonic()) the pod was seen to exist: a list made later must show it.
    confirmed_at: float = 0.0
    cancelled: bool = False
    #: The Secret holding the URL of its presigned grants (`blob_access = "presigned"`);
    #: `secret_made` once created, `secret_owned` once the pod owns it (deleted with it).
    secret: str = ""
    secret_made: bool = False
    secret_owned: bool = False
    grants_url: str = ""
    #: Its end is being read (log, documents): later events change nothing.
    finishing: bool = False
    last: dict[str, Any] = field(default_factory=dict)


class KubernetesBackend(Backend[KubernetesSettings]):
    """Runs each attempt as a pod; see the module docstring and docs/plugins/kubernetes.md."""

    driver: ClassVar[str] = "kubernetes"
    settings_model = KubernetesSettings
    poll_interval: ClassVar[float | None] = None
    reattaches: ClassVar[bool] = True
    #: A pod sees only its attempt's folders (host-path mode) or, on an s3 store, only its
    #: attempt's blobs through presigned URLs (store mode), and none of the engine's
    #: environment but what the settings pass; `isolation_gaps` says when the settings or a
    #: task's own options open more (docs/server.md, "Isolation").
    isolated: ClassVar[bool] = True

    def __init__(self, name: str, settings: KubernetesSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        workers = max(4, min(32, 2 * context.parallelism + 2))
        self.api = KubeApi(settings, pool_size=workers + 8)
        self.selector = backend_selector(name)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="taskfabric-kubernetes")
        self._lock = threading.Lock()
        self._runs: dict[tuple[str, str], PodRun] = {}  # (namespace, pod name) -> run
        self._attempts: dict[str, PodRun] = {}  # attempt_id -> run
        self._results: dict[str, AttemptStatus] = {}
        self._watches: dict[str, NamespaceWatch] = {}
        #: Released pods to delete: (when, namespace, name).
        self._deletions: list[tuple[float, str, str]] = []
        self._closed = threading.Event()
        local_root = context.store.local_path(context.store.uri("probe"))
        if settings.data == "auto":
            self._staged = local_root is not None
        else:
            self._staged = settings.data == "host-path"
        if self._staged and local_root is None:
            raise ValueError(
                f"backend '{name}': data = \"host-path\" needs a local (file://) blob store; "
                'this one is not: set data = "store" (pods reach the store themselves)'
            )
        #: Presigned access to their own blobs, for pods of an s3 store in store mode.
        self._access: PresignedAccess | None = (
            None if self._staged else presigned_access(context.store, settings, name)
        )
        self._ticker = threading.Thread(
            target=self._tick, name="taskfabric-kubernetes-ticker", daemon=True
        )
        self._ticker.start()

    # -- isolation ---------------------------------------------------------------------------

    def isolation_gaps(self, task: tasks_pb2.TaskTemplate) -> list[str]:
        gaps: list[str] = []
        section = f"[backends.{self.name}]"
        if not self._staged and self._access is None:
            if self.settings.blob_access == "credentials":
                how = 'with blob_access = "credentials"'
            else:
                how = f"on a {self.context.store.scheme}:// blob store, which cannot presign"
            gaps.append(
                f'{section} data = "store" {how}: each pod would reach the blob store with '
                "credentials of the whole store (every project's data); put the data root in "
                'S3 with blob_access = "auto" (the default: each pod gets presigned access to '
                "its own attempt's blobs only), or give the server a file:// blob store that "
                'the nodes mount, with data = "host-path"'
            )
        try:
            own = task_options(
                task, (self.driver,), self.settings.task_overrides, backend=self.name
            )
        except ValueError:
            own = {}  # refused at submit, with the reason
        if self._access is not None:
            gaps.extend(self._credential_gaps(task, own))
        if own.get("pod_template"):
            gaps.append(
                f"the task sets its own pod_template (backend_options), which can mount the "
                f'node\'s folders or run privileged: remove "pod_template" from {section} '
                "task_overrides (or the template from the task)"
            )
        if own.get("secret_env") and "{execution.project}" not in self.settings.namespace:
            gaps.append(
                f"the task reads Secrets of its own choice (secret_env) in namespace "
                f"{self.settings.namespace!r}, which projects share: put "
                '"{execution.project}" in the namespace, or remove "secret_env" from '
                f"{section} task_overrides"
            )
        return gaps

    def _credential_gaps(self, task: tasks_pb2.TaskTemplate, own: dict[str, Any]) -> list[str]:
        """What would hand a pod credentials that may reach the whole S3 store, beside its
        presigned grants."""
        assert self._access is not None
        section = f"[backends.{self.name}]"
        variables = self._access.credential_variables
        gaps: list[str] = []
        given = sorted(
            {*self.settings.pass_env, *self.settings.env, *self.settings.secret_env} & variables
        )
        if given:
            gaps.append(
                f"{section} passes {', '.join(given)} to every pod: AWS credentials that may "
                "reach the whole blob store (every project's data); remove them from pass_env, "
                "env and secret_env (pods read and write their own blobs through presigned "
                "URLs and need no credential)"
            )
        for key in ("env", "secret_env"):
            named = sorted(set(own.get(key) or {}) & variables)
            if named:
                gaps.append(
                    f"the task sets {', '.join(named)} in its own {key} (backend_options): AWS "
                    f"credentials that may reach the whole blob store; remove them from the "
                    f'task, or remove "{key}" from {section} task_overrides'
                )
        for template in task_templates(self.settings, task.id.name):
            spec = template.get("spec") or {}
            account = spec.get("serviceAccountName") or spec.get("serviceAccount")
            if account:
                gaps.append(
                    f"{section} pod_template runs pods as service account {account!r}, which "
                    "may carry a cloud role (IAM roles for service accounts, EKS Pod Identity) "
                    "and taskfabric cannot tell whether it reaches the blob store's bucket; "
                    "remove serviceAccountName (pods read and write their blobs through "
                    "presigned URLs and need no role), or declare the deployment single-tenant"
                )
                break
        return gaps

    # -- submit ----------------------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        namespace, name = self._where(attempt)
        key = (namespace, name)
        with self._lock:
            if attempt.attempt_id in self._attempts or attempt.attempt_id in self._results:
                return  # submitted before: an attempt never runs twice
            run = PodRun(
                attempt=attempt,
                namespace=namespace,
                name=name,
                folder=self.context.work_root
                / attempt.execution_id
                / node_key(attempt.node_id)
                / str(attempt.attempt),
                log_path=live_log_path(
                    self.context.work_root, attempt.execution_id, attempt.node_id, attempt.attempt
                ),
                staged=self._staged,
            )
            self._attempts[attempt.attempt_id] = run
            self._runs[key] = run
        self._spawn(self._start, run)

    def _where(self, attempt: TaskAttempt) -> tuple[str, str]:
        """The namespace and name of the attempt's pod: from its handle when an earlier
        engine recorded one, else from the settings."""
        handle = attempt.handle.removeprefix(PENDING)
        if "/" in handle:
            namespace, name = handle.split("/", 1)
            return namespace, name
        namespace = namespace_of(self.settings.namespace, attempt.project, attempt.domain)
        return namespace, pod_name(attempt.attempt_id)

    def _task_where(self, attempt: TaskAttempt) -> str:
        return f"task '{attempt.task.id.name}' (node {attempt.node_id})"

    def _start(self, run: PodRun) -> None:
        attempt = run.attempt
        try:
            self._watch(run.namespace)
            handle = attempt.handle
            if handle:
                pod = self.api.read_pod(run.namespace, run.name)
                if pod is not None:
                    self._adopt(run, pod)
                    return
                if not handle.startswith(PENDING):
                    # Created by an earlier engine process and gone since: its documents
                    # tell how it ended, if it did.
                    status = self._documents(run) or AttemptStatus(
                        AttemptPhase.FAILED,
                        error=AttemptError(
                            "PodLost",
                            f"pod {run.namespace}/{run.name} of {self._task_where(attempt)} "
                            "is gone and left no outcome (deleted while the engine was down)",
                            kind="system",
                            retryable=True,
                        ),
                    )
                    self._finish_with(run, status)
                    return
            # Recorded before the pod exists: an engine killed right after creating it finds
            # it by this name.
            attempt.record_handle(f"{PENDING}{run.namespace}/{run.name}")
            manifest = self._manifest(run)
            pod = self._create(run, manifest)
            if pod is None:
                return  # cancelled while waiting for quota
            attempt.record_handle(f"{run.namespace}/{run.name}")
            self._confirm(run, pod)
            self._own_secret(run, pod)
            log.info(
                "attempt pod created",
                backend=self.name,
                attempt_id=attempt.attempt_id,
                pod=f"{run.namespace}/{run.name}",
                image=run.image,
            )
            if run.cancelled or self._closed.is_set():
                self._delete(run.namespace, run.name, self.settings.kill_grace_seconds)
        except _SetUpError as exc:
            self._finish_with(run, AttemptStatus(AttemptPhase.FAILED, error=exc.error))
        except Exception as exc:
            log.exception("pod start failed", backend=self.name, pod=run.name)
            self._finish_with(
                run,
                AttemptStatus(
                    AttemptPhase.FAILED,
                    error=AttemptError(
                        type(exc).__name__,
                        f"backend '{self.name}' could not start pod {run.namespace}/{run.name} "
                        f"through {self.api.where}: {exc}",
                        kind="system",
                        retryable=True,
                    ),
                ),
            )

    def _adopt(self, run: PodRun, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata", {})
        owner = meta.get("annotations", {}).get(ANNOTATION_ATTEMPT_ID)
        if owner != run.attempt.attempt_id:
            raise _SetUpError(
                "PodNameTaken",
                f"pod {run.namespace}/{run.name} exists but belongs to "
                f"{owner or 'something else'}, not to attempt {run.attempt.attempt_id}: "
                "delete it",
                kind="system",
            )
        self._confirm(run, pod)
        log.info(
            "re-attached to the attempt's pod",
            backend=self.name,
            attempt_id=run.attempt.attempt_id,
            pod=f"{run.namespace}/{run.name}",
        )
        self._on_pod("ADOPTED", pod)

    def _confirm(self, run: PodRun, pod: dict[str, Any]) -> None:
        with self._lock:
            run.uid = pod.get("metadata", {}).get("uid", "")
            run.confirmed_at = time.monotonic()

    def _create(self, run: PodRun, manifest: dict[str, Any]) -> dict[str, Any] | None:
        where = self._task_where(run.attempt)
        created_namespace = False
        while True:
            try:
                if run.secret and not run.secret_made:
                    # Before the pod: a pod whose Secret is missing fails at once.
                    self.api.put_secret(run.namespace, self._secret_manifest(run))
                    run.secret_made = True
                return self.api.create_pod(run.namespace, manifest)
            except KubeApiError as exc:
                if exc.status == 409:
                    pod = self.api.read_pod(run.namespace, run.name)
                    if pod is not None:
                        # An earlier engine process created it: it is ours.
                        self._adopt(run, pod)
                        return pod
                    continue
                if exc.status == 404 and not created_namespace:
                    if not self.settings.create_namespaces:
                        raise _SetUpError(
                            "NamespaceNotFound",
                            f"{where}: namespace {run.namespace!r} does not exist in "
                            f"{self.api.where}: create it (kubectl create namespace "
                            f"{run.namespace}), or set create_namespaces = true in "
                            f"[backends.{self.name}]",
                            kind="system",
                        ) from exc
                    self.api.create_namespace(run.namespace)
                    created_namespace = True
                    continue
                if exc.status == 403 and "exceeded quota" in exc.message:
                    # The namespace's ResourceQuota is full: wait for room, as a pool would.
                    log.info("pod quota full, waiting", pod=run.name, error=exc.message)
                    if self._closed.wait(QUOTA_RETRY_SECONDS) or run.cancelled:
                        return None
                    continue
                if exc.status == 403 and run.secret and not run.secret_made:
                    raise _SetUpError(
                        "Forbidden",
                        f"{where}: {self.api.where} may not create the Secret of the pod's "
                        f"presigned grants in namespace {run.namespace!r}: {exc.message}. "
                        "Grant its user create, update, patch and delete on secrets there "
                        "(a Role and a RoleBinding); `taskfabric plugins check` lists what is "
                        "missing",
                        kind="system",
                    ) from exc
                if exc.status == 403:
                    raise _SetUpError(
                        "Forbidden",
                        f"{where}: {self.api.where} may not create pods in namespace "
                        f"{run.namespace!r}: {exc.message}. Grant its user create, get, list, "
                        "watch and delete on pods and get on pods/log there (a Role and a "
                        "RoleBinding); `taskfabric plugins check` lists what is missing",
                        kind="system",
                    ) from exc
                if exc.status == 422:
                    raise _SetUpError(
                        "InvalidPodSpec",
                        f"{where}: the API server refused its pod: {exc.message}. Fix the pod "
                        f"template or the task's resources ([backends.{self.name}] "
                        "pod_template / task_pod_templates, @task(requests=..., limits=...))",
                    ) from exc
                raise

    def _manifest(self, run: PodRun) -> dict[str, Any]:
        attempt = run.attempt
        where = self._task_where(attempt)
        run.image = attempt.task.container_image or self.settings.image
        if not run.image:
            raise _SetUpError(
                "NoImage",
                f"{where} names no container image and backend '{self.name}' has no default: "
                f'set `image = "..."` in [backends.{self.name}] or @task(container_image=...)',
            )
        store = self.context.store
        template_uri = store.uri("executions", attempt.execution_id, "pod-tasks", f"{run.name}.pb")
        inputs_uri, outputs_uri, error_uri = (
            attempt.inputs_uri,
            attempt.outputs_uri,
            attempt.error_uri,
        )
        mounts: list[HostMount] = []
        template_bytes = attempt.task.SerializeToString(deterministic=True)
        if run.staged:
            # The pod gets its own copies of the template and inputs, and writes its outputs
            # or error document next to them; the backend moves them into place.
            run.folder.mkdir(parents=True, exist_ok=True)
            (run.folder / "task.pb").write_bytes(template_bytes)
            (run.folder / "inputs.pb").write_bytes(attempt.inputs.SerializeToString())
            for stale in ("outputs.pb", "error.pb"):
                (run.folder / stale).unlink(missing_ok=True)
            template_uri = (run.folder / "task.pb").as_uri()
            inputs_uri = (run.folder / "inputs.pb").as_uri()
            outputs_uri = (run.folder / "outputs.pb").as_uri()
            error_uri = (run.folder / "error.pb").as_uri()
            mounts.append(HostMount(str(run.folder), str(run.folder), read_only=False))
            raw = store.local_path(attempt.raw_prefix)
            if raw is not None:
                raw.mkdir(parents=True, exist_ok=True)
                mounts.append(HostMount(str(raw), str(raw), read_only=False))
            mounts.extend(input_mounts(store, blob_uris(attempt.inputs)))
            mounts.extend(socket_mounts(attempt.env.values()))
        else:
            store.put_bytes(template_uri, template_bytes)
        grants_env: dict[str, str] = {}
        if self._access is not None:
            # The pod's own blobs, presigned: the URL of its grants goes in a Secret of its
            # own (whoever may read the pod's spec may not read it), never in the spec.
            url = self._access.grant(attempt, template_uri, self._grants_uri(run))
            run.secret = f"{run.name}-grants"
            run.grants_url = url
            grants_env[self._access.variable] = f"{run.secret}/{SECRET_KEY}"
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
        # The engine's pool channel for `taskfabric.hold()` in the task's code.
        env.update(attempt.env)
        if attempt.code_path and (run.staged or self.settings.code == "host-path"):
            # A registered workflow's code bundle, extracted on the engine's machine (never
            # the folder its template names: that path was the registering machine's, and
            # a registered template could name any folder of the node).
            for folder in attempt.code_path:
                mounts.append(HostMount(folder, folder, read_only=True))
            env["PYTHONPATH"] = os.pathsep.join(attempt.code_path)
        elif self.settings.code == "host-path":
            root = code_root(attempt.task.function)
            if root is not None:
                mounts.append(HostMount(str(root), str(root), read_only=True))
                env["PYTHONPATH"] = str(root)
        command = [
            self.settings.python, "-m", "taskfabric.execute",
            "--task-template", template_uri,
            "--inputs", inputs_uri,
            "--outputs", outputs_uri,
            "--error", error_uri,
            "--raw-prefix", attempt.raw_prefix,
            "--work-dir", POD_WORK_DIR,
        ]  # fmt: skip
        return pod_manifest(
            settings=self.settings,
            name=run.name,
            namespace=run.namespace,
            labels=attempt_labels(self.name, attempt),
            annotations={ANNOTATION_ATTEMPT_ID: attempt.attempt_id},
            template=attempt.task,
            image=run.image,
            command=command,
            env=env,
            mounts=mounts,
            # Files the pod writes into the engine's folders belong to the engine's user.
            run_as=(os.getuid(), os.getgid()) if run.staged else None,
            own=own,
            secret_refs=grants_env,
        )

    def _grants_uri(self, run: PodRun) -> str:
        """Where the attempt's grants document is written (beside its task template)."""
        execution = run.attempt.execution_id
        return self.context.store.uri("executions", execution, "pod-tasks", f"{run.name}.json")

    def _secret_manifest(self, run: PodRun) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": run.secret,
                "namespace": run.namespace,
                "labels": {**self.settings.labels, **attempt_labels(self.name, run.attempt)},
                "annotations": {ANNOTATION_ATTEMPT_ID: run.attempt.attempt_id},
            },
            "stringData": {SECRET_KEY: run.grants_url},
        }

    def _own_secret(self, run: PodRun, pod: dict[str, Any]) -> None:
        """Make the pod its Secret's owner, so that the cluster deletes the Secret with the
        pod whoever deletes it; failing that, `release` deletes it."""
        if not run.secret_made:
            return
        try:
            self.api.own_secret(run.namespace, run.secret, pod)
            run.secret_owned = True
        except KubeApiError as exc:
            log.warning("could not make the pod own its Secret", pod=run.name, error=str(exc))

    def _revoke(self, run: PodRun) -> None:
        """Delete the attempt's grants document (its URLs work until they expire, but
        nothing can learn them any more), and its Secret unless the pod owns it."""
        if self._access is None or run.staged:
            return
        try:
            self._access.revoke(self._grants_uri(run))
        except Exception as exc:
            log.warning("could not delete the pod's grants", pod=run.name, error=str(exc))
        if run.secret_made and not run.secret_owned:
            try:
                self.api.delete_secret(run.namespace, run.secret)
            except KubeApiError as exc:
                log.warning("could not delete the pod's Secret", pod=run.name, error=str(exc))

    # -- following pods --------------------------------------------------------------------

    def _watch(self, namespace: str) -> None:
        with self._lock:
            if namespace in self._watches or self._closed.is_set():
                return
            self._watches[namespace] = NamespaceWatch(
                self.api,
                namespace,
                self.selector,
                self.settings.resync_seconds,
                self._on_pod,
                self._on_list,
            )

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata", {})
        key = (meta.get("namespace", ""), meta.get("name", ""))
        with self._lock:
            run = self._runs.get(key)
            if run is None or run.cancelled or run.finishing:
                return
            if run.uid and meta.get("uid") and meta["uid"] != run.uid:
                return  # another pod of that name (an older one's late event)
            if kind == "DELETED":
                run.finishing = True
            else:
                run.last = pod
                state = self._assess(run, pod)
                if state.pending or state.running:
                    return
                run.finishing = True
        if kind == "DELETED":
            self._spawn(self._finish_deleted, run)
        else:
            self._spawn(self._finish, run, pod, state)

    def _assess(self, run: PodRun, pod: dict[str, Any]) -> PodState:
        return assess(
            pod,
            time.time(),
            unschedulable_seconds=self.settings.unschedulable_seconds,
            image_pull_seconds=self.settings.image_pull_seconds,
            image=run.image,
        )

    def _on_list(self, namespace: str, names: set[str], started: float) -> None:
        """After a (re)list asked for at `started`: a pod this backend had seen before then
        that the list lacks was deleted while the watch did not look."""
        with self._lock:
            gone = [
                run
                for (ns, name), run in self._runs.items()
                if ns == namespace
                and name not in names
                and run.uid
                and run.confirmed_at < started
                and not run.cancelled
                and not run.finishing
            ]
            for run in gone:
                run.finishing = True
        for run in gone:
            self._spawn(self._finish_deleted, run)

    def _tick(self) -> None:
        """Once a second: assess pending pods that may fail by waiting alone (scheduling,
        image pulls; no API call), and delete released pods whose keeping time is over."""
        while not self._closed.wait(1.0):
            # Nothing may end this thread: pending pods would never time out.
            try:
                self._tick_once()
            except BaseException as exc:
                with contextlib.suppress(BaseException):
                    log.warning("kubernetes ticker turn failed", error=f"{exc!r}"[:500])

    def _tick_once(self) -> None:
        now = time.time()
        with self._lock:
            waiting = [
                r
                for r in self._runs.values()
                if r.last and not r.finishing and not r.cancelled and has_deadline(r.last)
            ]
            due: list[tuple[float, str, str]] = []
            while self._deletions and self._deletions[0][0] <= now:
                due.append(heapq.heappop(self._deletions))
        for run in waiting:
            try:  # one pod's failure must not keep the others from being assessed
                self._on_pod("RESYNC", run.last)
            except Exception as exc:
                with contextlib.suppress(Exception):
                    log.warning("assessing a pod failed", pod=run.name, error=f"{exc!r}"[:500])
        for _, namespace, name in due:
            self._spawn(self._delete, namespace, name, 0)

    # -- an attempt's end ------------------------------------------------------------------

    def _finish(self, run: PodRun, pod: dict[str, Any], state: PodState) -> None:
        try:
            status = self._status(run, pod, state)
        except Exception as exc:
            log.exception("reading the end of a pod failed", pod=run.name)
            status = AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    type(exc).__name__,
                    f"could not read how pod {run.namespace}/{run.name} ended: {exc}",
                    kind="system",
                    retryable=True,
                ),
            )
        self._finish_with(run, status)

    def _finish_deleted(self, run: PodRun) -> None:
        status = self._documents(run) or AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError(
                "PodDeleted",
                f"pod {run.namespace}/{run.name} of {self._task_where(run.attempt)} was "
                "deleted before its task ended (by a person, a controller or node failure)",
                kind="system",
                retryable=True,
            ),
        )
        self._finish_with(run, status)

    def _finish_with(self, run: PodRun, status: AttemptStatus) -> None:
        attempt_id = run.attempt.attempt_id
        with self._lock:
            if run.cancelled or self._attempts.get(attempt_id) is not run:
                return
            run.finishing = True
            self._results[attempt_id] = status
        run.attempt.notify(attempt_id)

    def _keep_log(self, run: PodRun) -> list[LogLink]:
        """The pod's log, written to the attempt's live log file and kept in the store."""
        try:
            data = self.api.pod_log(run.namespace, run.name, TASK_CONTAINER)
        except KubeApiError as exc:
            log.warning("could not read the pod's log", pod=run.name, error=str(exc))
            return []
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        run.log_path.write_bytes(data)
        attempt = run.attempt
        links = [LogLink("output", run.log_path.as_uri())]
        kept = keep_log(
            self.context.store, attempt.execution_id, attempt.node_id, attempt.attempt, run.log_path
        )
        if kept is not None:
            links.insert(0, LogLink(LOG_LINK_NAME, kept))
        return links

    def _documents(self, run: PodRun) -> AttemptStatus | None:
        """What `taskfabric-execute` wrote (outputs or an error document), moved into the
        store; None if it wrote neither."""
        attempt = run.attempt
        store = self.context.store
        if run.staged:
            # What the pod left is checked before it is read: it must not point the engine
            # or a later reader at a path it was not given (a link, another's blob).
            raw = store.local_path(attempt.raw_prefix)
            refused = check_output_folder(raw) if raw is not None and raw.is_dir() else None
            limit = self.context.max_output_bytes
            refused = refused or oversized_outputs(attempt, run.folder / "outputs.pb", limit)
            outputs = read_regular(run.folder / "outputs.pb", limit)
            if refused is None and outputs is not None:
                refused = check_outputs(attempt, outputs)
            if refused is not None:
                return AttemptStatus(AttemptPhase.FAILED, error=refused)
            if outputs is not None:
                store.put_bytes(attempt.outputs_uri, outputs)
                return AttemptStatus(AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri)
            data = read_regular(run.folder / "error.pb") or b""
            if data:
                store.put_bytes(attempt.error_uri, data)
        else:
            if store.exists(attempt.outputs_uri):
                if self._access is not None:
                    # A pod that reaches its own blobs only must not name another's in its
                    # outputs: the next task would be granted it.
                    refused = check_outputs(attempt, store.get_bytes(attempt.outputs_uri))
                    if refused is not None:
                        return AttemptStatus(AttemptPhase.FAILED, error=refused)
                return AttemptStatus(AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri)
            data = store.get_bytes(attempt.error_uri) if store.exists(attempt.error_uri) else b""
        if not data:
            return None
        err = execution_pb2.ExecutionError()
        try:
            err.ParseFromString(data)
        except Exception:
            log.warning("unreadable error document", pod=run.name)
            return None
        return AttemptStatus(AttemptPhase.FAILED, error=AttemptError.from_proto(err))

    def _status(self, run: PodRun, pod: dict[str, Any], state: PodState) -> AttemptStatus:
        where = f"pod {run.namespace}/{run.name}"
        if state.error is not None:
            links = self._keep_log(run) if pod.get("status", {}).get("startTime") else []
            return AttemptStatus(AttemptPhase.FAILED, error=state.error, log_links=links)
        links = self._keep_log(run)
        documents = self._documents(run)
        if documents is not None and (
            (documents.error is not None and documents.error.code == REFUSED)
            or (documents.phase is AttemptPhase.SUCCEEDED and state.exit_code == 0)
            or (documents.phase is AttemptPhase.FAILED and state.exit_code in (1, 2))
        ):
            documents.log_links = links
            return documents
        last = tail(run.log_path) if run.log_path.is_file() else ""
        if state.reason == "OOMKilled":
            limit = _memory_limit(pod)
            described = f"limit {limit}" if limit else "no memory limit set"
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    "OutOfMemory",
                    f"killed: out of memory (OOMKilled), {described} ({where}); give the task "
                    "more with @task(limits=Resources(memory=...)) or use less",
                    kind="user",
                    retryable=True,
                ),
                log_links=links,
            )
        code = state.exit_code
        if code == 0:
            how = "exited with code 0 without writing its outputs"
        else:
            how = describe_exit(code, shell_status=True)
        if state.reason and state.reason not in ("Error", "Completed"):
            how += f" ({state.reason}{': ' + state.message if state.message else ''})"
        message = f"the task's {where} {how}"
        if last:
            message += f"; last lines of its log:\n{last}"
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("PodFailed", message, kind="system", retryable=True),
            log_links=links,
        )

    def _spawn(self, fn: Callable[..., object], *args: object) -> None:
        """Run `fn(*args)` on the backend's threads; an exception is logged, never lost."""

        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("kubernetes backend task failed", task=getattr(fn, "__name__", fn))

        self._pool.submit(run)

    # -- the engine's other calls ------------------------------------------------------------

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            return self._results.get(attempt_id, RUNNING)

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            run = self._attempts.get(attempt_id)
            self._results.pop(attempt_id, None)
            if run is None or run.cancelled:
                return
            run.cancelled = True
        log.info("deleting the pod of a cancelled attempt", pod=f"{run.namespace}/{run.name}")
        self._spawn(self._delete, run.namespace, run.name, self.settings.kill_grace_seconds)

    def abandon(self, attempt_id: str, handle: str) -> None:
        """An earlier engine process's pod that no run will re-attach to: deleted (with the
        grace of a cancel), without waiting. A provisional handle names the pod too (its name
        is the attempt's own): deleted if it was created."""
        namespace, _, name = handle.removeprefix(PENDING).partition("/")
        if not namespace or not name:
            return
        log.info("deleting the pod of an attempt no run re-attached to", pod=handle)
        self._spawn(self._delete, namespace, name, self.settings.kill_grace_seconds)
        if self._access is not None:
            # Deleted with its pod when the pod owns it; not when the engine died before.
            self._spawn(self._delete_secret, namespace, f"{name}-grants")

    def _delete_secret(self, namespace: str, name: str) -> None:
        try:
            self.api.delete_secret(namespace, name)
        except KubeApiError as exc:
            log.warning("could not delete Secret", secret=f"{namespace}/{name}", error=str(exc))

    def _delete(self, namespace: str, name: str, grace: int) -> None:
        try:
            found = self.api.delete_pod(namespace, name, grace)
            if grace:  # a cancel: worth a line (a finished pod's deletion is not)
                log.info("pod deleted", pod=f"{namespace}/{name}", found=found, grace=grace)
        except KubeApiError as exc:
            log.warning("could not delete pod", pod=f"{namespace}/{name}", error=str(exc))

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)
            run = self._attempts.pop(attempt_id, None)
            if run is None:
                return
            self._runs.pop((run.namespace, run.name), None)
        if self._access is not None:
            if self._closed.is_set():
                self._revoke(run)
            else:
                self._spawn(self._revoke, run)
        with self._lock:
            if run.cancelled:
                return  # its pod is being deleted
            keep = self.settings.keep_finished_pods_seconds
            if keep > 0:
                heapq.heappush(self._deletions, (time.time() + keep, run.namespace, run.name))
                return
        if not self._closed.is_set():
            self._spawn(self._delete, run.namespace, run.name, 0)
        else:
            self._delete(run.namespace, run.name, 0)

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> list[PoolRequest]:
        return [PoolRequest(self.settings.pod_pool)] if self.settings.pod_pool else []

    def check(self) -> CheckResult:
        from taskfabric_kubernetes._check import check_backend

        ok, message = check_backend(
            self.api, self.settings, self.name, secrets=self._access is not None
        )
        return CheckResult(ok, message)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        with self._lock:
            running = [r for r in self._runs.values() if not r.cancelled and not r.finishing]
            for run in running:
                run.cancelled = True
            watches = list(self._watches.values())
        for watch in watches:
            watch.stop()
        # The engine gives up on what still runs: its pods go too.
        for run in running:
            if run.uid:
                self._spawn(self._delete, run.namespace, run.name, self.settings.kill_grace_seconds)
            if self._access is not None:
                self._spawn(self._revoke, run)
        self._pool.shutdown(wait=True, cancel_futures=False)
        self.api.close()

    # -- for benchmarks and tests ----------------------------------------------------------

    @property
    def api_calls(self) -> int:
        """API calls made so far (creates, deletes, logs, lists, watches started)."""
        return self.api.calls


def _memory_limit(pod: dict[str, Any]) -> str:
    for container in pod.get("spec", {}).get("containers") or []:
        if container.get("name") == TASK_CONTAINER:
            return str(container.get("resources", {}).get("limits", {}).get("memory", ""))
    return ""


class _SetUpError(Exception):
    """An attempt that cannot start as set up: a failed attempt, not worth a retry."""

    def __init__(self, code: str, message: str, kind: str = "user") -> None:
        super().__init__(message)
        self.error = AttemptError(code, message, kind=kind, retryable=False)


__all__ = ["KubernetesBackend", "PodRun"]
