"""Re-attach: the engine's side of `TaskAttempt.handle` / `TaskAttempt.record_handle`.

A backend records an attempt's external handle as soon as it knows it; it is committed to the
attempt's row at once (from whichever thread calls). When an engine process stops during the
attempt and the execution is resumed, `Engine.resume` hands such attempts to the loop as
`Reattach` entries instead of failing them as interrupted: the same attempt (same number, same
attempt_id) is submitted again with its handle, after taking its pools like any attempt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from taskfabric.engine._state import RUNNING, NodeState
from taskfabric.metadata import AttemptRecord, MetadataStore, NodeRecord

__all__ = ["INTERRUPTED", "Reattach", "handle_recorder"]

#: The error code of an attempt whose engine process stopped under it.
INTERRUPTED = "Interrupted"


@dataclass(frozen=True)
class Reattach:
    """An attempt left RUNNING by a stopped engine process, with the handle it recorded."""

    attempt: int
    handle: str


def handle_recorder(
    metadata: MetadataStore, execution_id: str, ns: NodeState, backend: str
) -> Callable[[str], None]:
    """The `record_handle` of the attempt `ns` is about to start: it only reads values taken
    now, so any thread may call it at any time."""
    parent = ns.parent or ns.scope.owner
    node = NodeRecord(
        execution_id=execution_id,
        node_id=ns.full_id,
        kind=ns.kind,
        phase=RUNNING,
        name=ns.name,
        parent_id=parent.full_id if parent is not None else "",
        task_name=ns.task.id.name if ns.task is not None else "",
        attempts=ns.attempt,
        inputs_uri=ns.inputs_uri,
        outputs_uri=ns.outputs_uri,
        started_at=ns.started_at,
    )
    attempt = AttemptRecord(
        execution_id=execution_id,
        node_id=ns.full_id,
        attempt=ns.attempt,
        phase=RUNNING,
        started_at=ns.attempt_started_at,
        backend=backend,
    )

    def record_handle(handle: str) -> None:
        if not isinstance(handle, str):
            raise TypeError(f"record_handle takes a str handle, not {type(handle).__name__}")
        metadata.record_attempt_handle(node, dataclasses.replace(attempt, handle=handle))

    return record_handle
