"""Re-attach: the engine's side of `TaskAttempt.handle` / `TaskAttempt.record_handle`.

A backend records an attempt's external handle as soon as it knows it; it is committed to the
attempt's row at once (from whichever thread calls). When an engine process stops during the
attempt and the execution is resumed, `Engine.resume` hands such attempts to the loop as
`Reattach` entries instead of failing them as interrupted: the same attempt (same number, same
attempt_id) is submitted again with its handle, after taking its pools like any attempt.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from taskfabric.engine._state import FAILED, RUNNING, NodeState
from taskfabric.metadata import AttemptRecord, Batch, EventRecord, MetadataStore, NodeRecord

__all__ = ["INTERRUPTED", "Reattach", "handle_recorder", "record_unattached"]

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


def record_unattached(
    metadata: MetadataStore, execution_id: str, reattach: Mapping[str, Reattach]
) -> None:
    """Attempts left running by a stopped engine process that the run ended without
    submitting again (a cache hit, a failure elsewhere first), still RUNNING in the database:
    recorded as interrupted."""
    now = time.time()
    batch = Batch()
    for rec in metadata.attempts(execution_id):
        again = reattach.get(rec.node_id)
        if again is None or again.attempt != rec.attempt or rec.phase != RUNNING:
            continue
        rec.phase, rec.finished_at = FAILED, now
        rec.error = {
            "kind": "system",
            "code": INTERRUPTED,
            "message": "the engine process stopped during this attempt, and the resumed "
            f"execution ended without re-attaching to its work ({rec.handle})",
        }
        batch.attempt(rec)
        batch.event(EventRecord(execution_id, rec.node_id, rec.attempt, FAILED, now, "interrupted"))
    metadata.apply(batch)
