"""Container names and labels derived from the attempt: the same attempt always gets the same
name, so a restarted engine finds its container again."""

from __future__ import annotations

import hashlib
import re

from taskfabric.plugin_api import TaskAttempt

_UNSAFE = re.compile(r"[^a-zA-Z0-9_.-]+")
#: Label keys on every attempt container.
LABEL_ATTEMPT = "taskfabric.attempt_id"
LABEL_EXECUTION = "taskfabric.execution_id"
LABEL_NODE = "taskfabric.node_id"


def container_name(attempt_id: str) -> str:
    """`tf-<readable part>-<hash>`: unique per attempt id, valid for Docker and podman."""
    digest = hashlib.sha256(attempt_id.encode()).hexdigest()[:12]
    readable = _UNSAFE.sub("-", attempt_id).strip("-._")[:40]
    return f"tf-{readable}-{digest}" if readable else f"tf-{digest}"


def attempt_labels(attempt: TaskAttempt) -> dict[str, str]:
    return {
        LABEL_ATTEMPT: attempt.attempt_id,
        LABEL_EXECUTION: attempt.execution_id,
        LABEL_NODE: attempt.node_id,
    }


__all__ = ["LABEL_ATTEMPT", "LABEL_EXECUTION", "LABEL_NODE", "attempt_labels", "container_name"]
