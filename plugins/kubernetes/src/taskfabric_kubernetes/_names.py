"""Pod names, labels and namespaces derived from the attempt: the same attempt always gets
the same pod name, so a restarted engine finds its pod again."""

from __future__ import annotations

import hashlib
import re

from taskfabric.plugin_api import TaskAttempt
from taskfabric.templates import Placeholder, parse, render
from taskfabric_kubernetes._settings import NAMESPACE_KINDS

_NOT_DNS = re.compile(r"[^a-z0-9-]+")
_NOT_LABEL = re.compile(r"[^A-Za-z0-9_.-]+")

#: Label keys on every attempt's pod.
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "taskfabric"
LABEL_BACKEND = "taskfabric.io/backend"
LABEL_PROJECT = "taskfabric.io/project"
LABEL_DOMAIN = "taskfabric.io/domain"
LABEL_EXECUTION = "taskfabric.io/execution"
LABEL_NODE = "taskfabric.io/node"
LABEL_ATTEMPT = "taskfabric.io/attempt"
LABEL_TASK = "taskfabric.io/task"
#: The full attempt id (not a valid label value: node ids hold brackets).
ANNOTATION_ATTEMPT_ID = "taskfabric.io/attempt-id"


def pod_name(attempt_id: str) -> str:
    """`tf-<readable part>-<hash>`: unique per attempt id, a valid DNS label (63 characters
    at most, so it is also the pod's host name)."""
    digest = hashlib.sha256(attempt_id.encode()).hexdigest()[:12]
    readable = _NOT_DNS.sub("-", attempt_id.lower()).strip("-")[:45].strip("-")
    return f"tf-{readable}-{digest}" if readable else f"tf-{digest}"


def label_value(value: str) -> str:
    """`value` as a label value: 63 characters of [A-Za-z0-9_.-], alphanumeric at both ends
    (a longer one keeps its start and a hash)."""
    cleaned = _NOT_LABEL.sub(".", value).strip("._-")
    if len(cleaned) > 63:
        digest = hashlib.sha256(value.encode()).hexdigest()[:10]
        cleaned = cleaned[:52].strip("._-") + "-" + digest
    return cleaned


def namespace_of(template: str, project: str, domain: str) -> str:
    """The namespace template filled in with the execution's project and domain, as a valid
    namespace name (lower case, "-" for anything else, 63 characters at most)."""
    values = {"project": project or "default", "domain": domain or "development"}

    def value_of(placeholder: Placeholder) -> str:
        return values[placeholder.name]

    text = render(parse(template, kinds=NAMESPACE_KINDS), value_of)
    name = _NOT_DNS.sub("-", text.lower()).strip("-")
    if len(name) > 63:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name[:54].strip("-") + "-" + digest
    return name


def attempt_labels(backend: str, attempt: TaskAttempt) -> dict[str, str]:
    labels = {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_BACKEND: label_value(backend),
        LABEL_EXECUTION: label_value(attempt.execution_id),
        LABEL_NODE: label_value(attempt.node_id),
        LABEL_ATTEMPT: str(attempt.attempt),
        LABEL_TASK: label_value(attempt.task.id.name),
    }
    if attempt.project:
        labels[LABEL_PROJECT] = label_value(attempt.project)
    if attempt.domain:
        labels[LABEL_DOMAIN] = label_value(attempt.domain)
    return {k: v for k, v in labels.items() if v}


def backend_selector(backend: str) -> str:
    """The label selector of every pod of one backend."""
    return f"{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_BACKEND}={label_value(backend)}"


__all__ = [
    "ANNOTATION_ATTEMPT_ID",
    "LABEL_ATTEMPT",
    "LABEL_BACKEND",
    "LABEL_DOMAIN",
    "LABEL_EXECUTION",
    "LABEL_MANAGED_BY",
    "LABEL_NODE",
    "LABEL_PROJECT",
    "LABEL_TASK",
    "attempt_labels",
    "backend_selector",
    "label_value",
    "namespace_of",
    "pod_name",
]
