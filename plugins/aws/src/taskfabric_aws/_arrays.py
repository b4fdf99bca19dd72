"""A map's items as one AWS Batch array job: its name, its tag, the handles of its children
and the manifest from which each child finds its own item.

All children of an array job run the same command; AWS Batch tells each its index
(`AWS_BATCH_JOB_ARRAY_INDEX`). The command is `python3 -m taskfabric_aws.array_item
MANIFEST`: the manifest (JSON in the blob store) lists, by index, each item's
`taskfabric-execute` arguments and environment.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from taskfabric.plugin_api import TaskAttempt

__all__ = [
    "ARRAY_SEPARATOR",
    "MAX_ARRAY",
    "array_key",
    "array_name_of",
    "child_id",
    "manifest_bytes",
    "parse_pending_child",
]

#: The most children of one array job (AWS Batch's limit); a larger map goes as several.
MAX_ARRAY = 10_000
#: Between an array job's name and a child's index in a provisional handle
#: (`pending:<array name>#<index>`): never in a job name.
ARRAY_SEPARATOR = "#"
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def array_key(attempt_ids: Sequence[str]) -> str:
    """The array job's tag value: a hash of its items' attempt ids, in index order."""
    return hashlib.sha256("\n".join(attempt_ids).encode()).hexdigest()[:32]


def array_name_of(attempts: Sequence[TaskAttempt]) -> str:
    """A Batch job name for these items: readable, unique, at most 128 of [A-Za-z0-9_-];
    it ends with the first 12 characters of `array_key`."""
    first = attempts[0]
    map_node = first.node_id.split("[", 1)[0]
    readable = _NAME_CHARS.sub("-", f"{first.execution_id}-{map_node}").strip("-")[:90]
    key = array_key([a.attempt_id for a in attempts])
    return f"tf-{readable}-x{len(attempts)}-{key[:12]}"


def child_id(array_job_id: str, index: int) -> str:
    """The job id of an array job's child: AWS Batch's `<array job id>:<index>`."""
    return f"{array_job_id}:{index}"


@dataclass(frozen=True)
class PendingChild:
    """What a provisional handle of an array's child says: the array's name, the index."""

    array_name: str
    index: int


def parse_pending_child(pending: str) -> PendingChild | None:
    """`<array name>#<index>` (the part after `pending:`), else None (a single job's name)."""
    name, sep, index = pending.rpartition(ARRAY_SEPARATOR)
    if not sep or not index.isdigit():
        return None
    return PendingChild(name, int(index))


def manifest_bytes(
    template_uri: str, attempts: Sequence[TaskAttempt], envs: Sequence[Mapping[str, str]]
) -> bytes:
    """The manifest of an array job: for each index, the item and how to run it."""
    items = [
        {
            "node_id": a.node_id,
            "attempt": a.attempt,
            "args": _execute_args(template_uri, a),
            "env": dict(env),
        }
        for a, env in zip(attempts, envs, strict=True)
    ]
    return json.dumps({"version": 1, "items": items}, indent=1).encode()


def _execute_args(template_uri: str, attempt: TaskAttempt) -> list[str]:
    """`taskfabric-execute`'s arguments for one item."""
    return [
        "--task-template", template_uri,
        "--inputs", attempt.inputs_uri,
        "--outputs", attempt.outputs_uri,
        "--error", attempt.error_uri,
        "--raw-prefix", attempt.raw_prefix,
    ]  # fmt: skip
