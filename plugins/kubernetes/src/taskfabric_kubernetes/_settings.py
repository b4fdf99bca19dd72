"""`[backends.<name>]` of the `kubernetes` driver."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskfabric.plugin_api import BackendSettings
from taskfabric.templates import Placeholder, TemplateError, parse

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: A Secret's name and key: "NAME/KEY".
_SECRET_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?)/([-._a-zA-Z0-9]+)$")
_SECRET_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_POD_KEYS = frozenset({"apiVersion", "kind", "metadata", "spec"})
#: The placeholders of the `namespace` template.
NAMESPACE_KINDS = ("execution",)
NAMESPACE_NAMES = ("project", "domain")


def _valid_env_names(value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
    for name in value:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    return value


def _valid_secret_refs(value: dict[str, str]) -> dict[str, str]:
    for name, ref in value.items():
        if not _SECRET_KEY.match(ref):
            raise ValueError(
                f"secret_env {name} = {ref!r} is not 'SECRET/KEY' (a Secret of the pod's "
                "namespace and one of its keys), e.g. 'api-credentials/token'"
            )
    return value


def _valid_pod_template(value: dict[str, Any]) -> dict[str, Any]:
    check_pod_template(value, "pod_template")
    return value


class KubernetesSettings(BackendSettings):
    """Where pods run (kubeconfig, context, namespace), what they run (image, Python) and how
    (pod template, secrets, limits), and how long the backend waits and keeps them."""

    #: The kubeconfig file. Empty: $KUBECONFIG, else ~/.kube/config, else the in-cluster
    #: service account (an engine running in a pod).
    kubeconfig: str = ""
    #: The kubeconfig context (one per cluster: give each backend target its own). Empty:
    #: the file's current context.
    context: str = ""
    #: The namespace of an execution's pods: a template with `{execution.project}` and
    #: `{execution.domain}`, lower-cased, with characters a namespace cannot hold turned to "-".
    namespace: str = "taskfabric-{execution.project}-{execution.domain}"
    #: Create a missing namespace (needs the right to); false: a missing one fails the attempt.
    create_namespaces: bool = False
    #: The image of tasks that name none (`@task(container_image=...)`, `register --image`).
    image: str = ""
    image_pull_policy: Literal["IfNotPresent", "Always", "Never"] = "IfNotPresent"
    #: The Python of the image that runs `taskfabric-execute`.
    python: str = "python3"
    #: How a pod reaches the attempt's data. "store": it reads and writes the blob store's
    #: URIs itself (an object store; how it may is `blob_access`). "host-path": the
    #: attempt's folders of a local (`file://`) store are mounted from the node with hostPath
    #: volumes, for a one-node cluster on the engine's machine or nodes that mount the data
    #: root at the same path. "auto": "host-path" with a local store, else "store".
    data: Literal["auto", "host-path", "store"] = "auto"
    #: With `data = "store"`, how a pod reaches the store. "presigned": with URLs and upload
    #: policies the engine presigns for its attempt alone (an s3 store; the pod gets the
    #: URL of its grants from a Secret of its own, and no credential). "credentials": with
    #: what the settings give it (`secret_env`): the whole store. "auto": "presigned" on an
    #: s3 store, else "credentials".
    blob_access: Literal["auto", "presigned", "credentials"] = "auto"
    #: Seconds a pod's presigned access lasts when its task has no timeout (with one: the
    #: timeout and an hour, for the time a pod waits to be scheduled); at most 7 days.
    grant_seconds: int = Field(default=86400, ge=60, le=7 * 24 * 3600)
    #: How the task's code reaches the pod. "image": the image holds it (importable by its
    #: module name). "host-path": the task's code folder is mounted read-only from the node at
    #: the same path.
    code: Literal["image", "host-path"] = "image"
    #: Environment variables set in every pod.
    env: dict[str, str] = {}
    #: Names of the engine's environment variables passed on to every pod when set.
    pass_env: list[str] = []
    #: Environment variables read from Secrets of the pod's namespace: NAME = "SECRET/KEY".
    #: taskfabric stores only the reference, never the value.
    secret_env: dict[str, str] = {}
    #: Secrets mounted as folders of files: "/MOUNT/PATH" = "SECRET".
    secret_volumes: dict[str, str] = {}
    #: A partial Pod manifest every attempt's pod starts from (node selectors, tolerations,
    #: service account, volumes, security context, ...). Its container named "task" is merged
    #: into the task's container; other containers are added as they are.
    pod_template: dict[str, Any] = {}
    #: Partial Pod manifests per task, by task name pattern (`fnmatch`, e.g. "train.*"),
    #: merged in order over `pod_template` for the tasks they match.
    task_pod_templates: dict[str, dict[str, Any]] = {}
    #: Requests and limits of tasks that declare none (`@task(requests=..., limits=...)`
    #: wins), in Kubernetes quantities ("500m", "1", "256Mi").
    cpu: str = ""
    memory: str = ""
    #: Extra labels on every pod.
    labels: dict[str, str] = {}
    #: The grace period of a cancelled or timed-out attempt's pod deletion (SIGTERM, then
    #: SIGKILL).
    kill_grace_seconds: int = Field(default=5, ge=0)
    #: Keep a finished pod this long after its attempt's end was recorded (for debugging);
    #: 0 deletes it at once. Pods still kept when the engine stops stay (delete them with
    #: `kubectl delete pod -l taskfabric.io/execution=ID`).
    keep_finished_pods_seconds: float = Field(default=0.0, ge=0)
    #: A pod that cannot be scheduled for this long fails its attempt (`Unschedulable`).
    unschedulable_seconds: float = Field(default=300.0, ge=0)
    #: A pod whose image cannot be pulled for this long fails its attempt (`ImagePullFailed`);
    #: an image that is not there under `image_pull_policy = "Never"` fails at once.
    image_pull_seconds: float = Field(default=120.0, ge=0)
    #: Seconds between re-lists of the pods (the watch's safety net).
    resync_seconds: float = Field(default=30.0, gt=0)
    #: Seconds an API call may take before it fails.
    api_timeout: float = Field(default=60.0, gt=0)
    #: A resource pool every pod holds one slot of while it runs (define it in
    #: `[pools.<name>]`: its slots are the pod quota; `project_caps`/`domain_caps` cap one
    #: project's or domain's namespaces). Empty: none.
    pod_pool: str = ""
    #: What a task may set for itself with `@task(backend_options={"kubernetes": {...}})`:
    #: "pod_template" (merged over `pod_template` and `task_pod_templates`), "env" (variables
    #: added over `env`), "secret_env" (added over `secret_env`). Narrow it to keep tasks from
    #: choosing their own node selectors, service account or volumes.
    task_overrides: list[Literal["pod_template", "env", "secret_env"]] = [
        "pod_template",
        "env",
        "secret_env",
    ]

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        try:
            parts = parse(value, kinds=NAMESPACE_KINDS)
        except TemplateError as exc:
            raise ValueError(
                f"namespace {value!r}: {exc}; its placeholders are {{execution.project}} and "
                "{execution.domain}"
            ) from exc
        for part in parts:
            if isinstance(part, Placeholder) and part.name not in NAMESPACE_NAMES:
                raise ValueError(
                    f"namespace {value!r}: unknown placeholder {{execution.{part.name}}}: use "
                    "{execution.project} or {execution.domain}"
                )
        return value

    _env_names = field_validator("env", "pass_env", "secret_env")(_valid_env_names)
    _secret_refs = field_validator("secret_env")(_valid_secret_refs)

    @field_validator("secret_volumes")
    @classmethod
    def _check_secret_volumes(cls, value: dict[str, str]) -> dict[str, str]:
        for path, secret in value.items():
            if not path.startswith("/"):
                raise ValueError(f"secret_volumes: {path!r} is not an absolute path")
            if not _SECRET_NAME.match(secret):
                raise ValueError(f"secret_volumes {path} = {secret!r} is not a Secret's name")
        return value

    _pod_template = field_validator("pod_template")(_valid_pod_template)

    @field_validator("task_pod_templates")
    @classmethod
    def _check_task_pod_templates(cls, value: dict[str, dict[str, Any]]) -> dict[str, Any]:
        for pattern, template in value.items():
            check_pod_template(template, f"task_pod_templates {pattern!r}")
        return value


def check_pod_template(template: dict[str, Any], where: str) -> None:
    """The shape of a partial Pod manifest; its content is the API server's to check."""
    unknown = sorted(set(template) - _POD_KEYS)
    if unknown:
        raise ValueError(
            f"{where}: unknown keys {', '.join(unknown)}: a pod template is a partial Pod "
            'manifest with metadata and spec (e.g. {spec = {nodeSelector = {disk = "ssd"}}})'
        )
    for key in ("metadata", "spec"):
        if key in template and not isinstance(template[key], dict):
            raise ValueError(f"{where}: {key} must be a table")
    containers = template.get("spec", {}).get("containers", [])
    if not isinstance(containers, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in containers
    ):
        raise ValueError(f"{where}: spec.containers must be a list of tables, each with a name")


class TaskOverrides(BaseModel):
    """What one task sets for its pod (`@task(backend_options={"kubernetes": {...}})`)."""

    model_config = ConfigDict(extra="forbid")

    pod_template: dict[str, Any] = {}
    env: dict[str, str] = {}
    secret_env: dict[str, str] = {}

    _env_names = field_validator("env", "secret_env")(_valid_env_names)
    _secret_refs = field_validator("secret_env")(_valid_secret_refs)
    _pod_template = field_validator("pod_template")(_valid_pod_template)


def check_task_overrides(options: dict[str, object], where: str) -> TaskOverrides:
    """A task's `backend_options` entry, validated as the backend's own settings are."""
    try:
        return TaskOverrides.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ValueError(f"{where}: backend_options: {problems}") from exc


__all__ = ["KubernetesSettings", "TaskOverrides", "check_pod_template", "check_task_overrides"]
