"""An attempt's Pod manifest: the settings' pod template, the task's own templates, then
what the backend sets (name, labels, image, command, resources, environment, volumes)."""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskfabric.core.v1 import tasks_pb2
from taskfabric_kubernetes._settings import KubernetesSettings, TaskOverrides

#: The name of the container that runs the task (a pod template's container of that name is
#: merged into it).
TASK_CONTAINER = "task"
#: Where `taskfabric-execute` works inside the pod.
POD_WORK_DIR = "/tmp/taskfabric-work"


class PodSpecError(ValueError):
    """The task's settings cannot make a pod (a bad resource quantity, a GPU count)."""


@dataclass(frozen=True)
class HostMount:
    """A folder or file of the node mounted at `target` (hostPath)."""

    source: str
    target: str
    read_only: bool


def merge(base: Any, over: Any) -> Any:
    """`over` merged into `base`: tables key by key; lists of containers by name; other lists
    concatenated; any other value of `over` wins. Neither argument is changed."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            if key in merged:
                if key in ("containers", "initContainers") and isinstance(value, list):
                    merged[key] = _merge_named(merged[key], value)
                else:
                    merged[key] = merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(over, list):
        return [*copy.deepcopy(base), *copy.deepcopy(over)]
    return copy.deepcopy(over)


def _merge_named(base: list[Any], over: list[Any]) -> list[Any]:
    merged = [copy.deepcopy(item) for item in base]
    for item in over:
        name = item.get("name") if isinstance(item, dict) else None
        for i, existing in enumerate(merged):
            if name is not None and isinstance(existing, dict) and existing.get("name") == name:
                merged[i] = merge(existing, item)
                break
        else:
            merged.append(copy.deepcopy(item))
    return merged


def task_templates(settings: KubernetesSettings, task_name: str) -> list[dict[str, Any]]:
    """The settings' pod template, then each task template whose pattern matches the task."""
    found = [settings.pod_template] if settings.pod_template else []
    for pattern, template in settings.task_pod_templates.items():
        if fnmatch.fnmatchcase(task_name, pattern):
            found.append(template)
    return found


def resources_of(
    template: tasks_pb2.TaskTemplate, settings: KubernetesSettings
) -> dict[str, dict[str, str]]:
    """The task container's requests and limits: the task's own, else the settings'
    defaults (a limit with no request is also the request, as Kubernetes does)."""

    def quantities(spec: tasks_pb2.ResourceSpec) -> dict[str, str]:
        found = {"cpu": spec.cpu, "memory": spec.memory}
        if spec.ephemeral_storage:
            found["ephemeral-storage"] = spec.ephemeral_storage
        if spec.gpu:
            found["nvidia.com/gpu"] = spec.gpu
        return {k: v for k, v in found.items() if v}

    requests = quantities(template.resources.requests)
    limits = quantities(template.resources.limits)
    if "nvidia.com/gpu" in requests:
        # Kubernetes takes extended resources as limits (a request must equal the limit).
        limits.setdefault("nvidia.com/gpu", requests.pop("nvidia.com/gpu"))
    defaults = {"cpu": settings.cpu, "memory": settings.memory}
    for key, value in defaults.items():
        if value and key not in requests and key not in limits:
            requests[key] = value
            limits[key] = value
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def pod_manifest(
    *,
    settings: KubernetesSettings,
    name: str,
    namespace: str,
    labels: Mapping[str, str],
    annotations: Mapping[str, str],
    template: tasks_pb2.TaskTemplate,
    image: str,
    command: Sequence[str],
    env: Mapping[str, str],
    mounts: Sequence[HostMount],
    run_as: tuple[int, int] | None,
    own: TaskOverrides | None = None,
    secret_refs: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Pod to create for one attempt (a plain dict, as the API takes it): the settings'
    pod template, the matching task pod templates, the task's own (`own`), then what the
    backend sets (`secret_refs`: variables of its own from Secrets, "SECRET/KEY", which win
    over any of the same name)."""
    own = own or TaskOverrides()
    # The pod's sandbox process is PID 1, so the task's process gets the SIGTERM of a
    # deletion (a PID 1 without a handler, as Python is, ignores it and waits for SIGKILL
    # at the end of the grace period). A template may turn it off.
    pod: dict[str, Any] = {"spec": {"shareProcessNamespace": True}}
    for partial in task_templates(settings, template.id.name):
        pod = merge(pod, partial)
    if own.pod_template:
        pod = merge(pod, own.pod_template)
    env_list: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in env.items()]
    for var, ref in {**settings.secret_env, **own.secret_env}.items():
        secret, key = ref.split("/", 1)
        env_list.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    for var, ref in (secret_refs or {}).items():
        secret, key = ref.split("/", 1)
        env_list = [e for e in env_list if e["name"] != var]
        env_list.append({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})
    volumes: list[dict[str, Any]] = []
    volume_mounts: list[dict[str, Any]] = []
    for i, mount in enumerate(mounts):
        volumes.append({"name": f"tf-host-{i}", "hostPath": {"path": mount.source}})
        volume_mounts.append(
            {"name": f"tf-host-{i}", "mountPath": mount.target, "readOnly": mount.read_only}
        )
    for i, (path, secret) in enumerate(sorted(settings.secret_volumes.items())):
        volumes.append({"name": f"tf-secret-{i}", "secret": {"secretName": secret}})
        volume_mounts.append({"name": f"tf-secret-{i}", "mountPath": path, "readOnly": True})
    container: dict[str, Any] = {
        "name": TASK_CONTAINER,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": list(command),
        "env": env_list,
        "volumeMounts": volume_mounts,
        "workingDir": "/",
        # The task needs no capability and gains none (no setuid program works).
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = resources_of(template, settings)
    if resources:
        container["resources"] = resources
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        # Pods are followed by the backend, not by a service account's API token.
        "automountServiceAccountToken": False,
    }
    if run_as is not None:
        spec["securityContext"] = {"runAsUser": run_as[0], "runAsGroup": run_as[1]}
    generated = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**settings.labels, **labels},
            "annotations": dict(annotations),
        },
        "spec": spec,
    }
    pod = merge(pod, generated)
    # The task's container first: `kubectl logs POD` and the backend read its log.
    containers = pod["spec"]["containers"]
    containers.sort(key=lambda c: c.get("name") != TASK_CONTAINER)
    # What the backend sets wins over the templates for these.
    pod["apiVersion"], pod["kind"] = "v1", "Pod"
    pod["metadata"]["name"], pod["metadata"]["namespace"] = name, namespace
    pod["spec"]["restartPolicy"] = "Never"
    return pod


__all__ = [
    "POD_WORK_DIR",
    "TASK_CONTAINER",
    "HostMount",
    "PodSpecError",
    "merge",
    "pod_manifest",
    "resources_of",
    "task_templates",
]
