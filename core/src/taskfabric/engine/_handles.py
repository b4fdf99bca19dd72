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
from typing import Any

from taskfabric.engine._state import FAILED, RUNNING
from taskfabric.logs import get_logger
from taskfabric.metadata import AttemptRecord, Batch, EventRecord, MetadataStore, NodeRecord
from taskfabric.plugin_api import Backend

log = get_logger("taskfabric.engine")

__all__ = [
    "INTERRUPTED",
    "Reattach",
    "end_unattached",
    "handle_recorder",
    "interrupt_unattached",
    "left_running",
    "take_over",
]

#: The error code of an attempt whose engine process stopped under it.
INTERRUPTED = "Interrupted"


@dataclass(frozen=True)
class Reattach:
    """An attempt left RUNNING by a stopped engine process, with the handle it recorded."""

    attempt: int
    handle: str


def handle_recorder(
    metadata: MetadataStore,
    node: NodeRecord,
    attempt: AttemptRecord,
    with_loop: Callable[[NodeRecord, AttemptRecord], bool] | None = None,
) -> Callable[[str], None]:
    """The `record_handle` of an attempt about to start, whose start the loop recorded as
    `node` and `attempt` (RUNNING; the records are not changed after, so any thread may call
    it at any time: the handle goes on a copy of `attempt`; `node` is written only where its
    row is missing). `with_loop` (the engine's recorder) commits the handle together with
    what the loop recorded (the attempt's start) when called on the loop's own thread, and
    returns False elsewhere: then the handle has its own transaction."""

    def record_handle(handle: str) -> None:
        if not isinstance(handle, str):
            raise TypeError(f"record_handle takes a str handle, not {type(handle).__name__}")
        found = dataclasses.replace(attempt, handle=handle)
        if with_loop is None or not with_loop(node, found):
            metadata.record_attempt_handle(node, found)

    return record_handle


def _interrupt(a: AttemptRecord, batch: Batch, now: float, message: str, event: str) -> None:
    """Record in `batch` that attempt `a`, left RUNNING, ended as interrupted."""
    a.phase, a.finished_at = FAILED, now
    a.error = {"kind": "system", "code": INTERRUPTED, "message": message}
    batch.attempt(a)
    batch.event(EventRecord(a.execution_id, a.node_id, a.attempt, FAILED, now, event))


def left_running(attempts: list[AttemptRecord], batch: Batch, now: float) -> dict[str, Reattach]:
    """What `Engine.resume` does with the attempts a stopped engine process left RUNNING:
    one with a recorded handle is submitted again (returned, by node id; only the latest
    attempt of a node can be: attempts come ordered by node and number); any other is
    recorded in `batch` as interrupted."""
    reattach = {
        a.node_id: Reattach(a.attempt, a.handle)
        for a in attempts
        if a.phase == RUNNING and a.handle
    }
    for a in attempts:
        again = reattach.get(a.node_id)
        if a.phase != RUNNING or (again is not None and again.attempt == a.attempt):
            continue
        _interrupt(
            a,
            batch,
            now,
            "the engine process stopped during this attempt",
            "interrupted: the engine process stopped",
        )
    return reattach


def take_over(
    metadata: MetadataStore, execution_id: str, now: float, start: str, owner: str
) -> tuple[dict[str, NodeRecord], dict[str, Reattach]]:
    """What a resume of an execution claimed at `now` reads and writes, in one transaction:
    its prior nodes (by id) and the attempts to re-attach (`left_running`; the others are
    recorded as interrupted), and its `start` ('started', 'resumed'; '' when its claim
    recorded it)."""
    prior = {n.node_id: n for n in metadata.prior_nodes(execution_id)}
    batch = Batch()
    reattach = left_running(metadata.attempts(execution_id, phase=RUNNING), batch, now)
    if start == "started":
        batch.update_execution(execution_id, phase=RUNNING, started_at=now)
    elif start:
        batch.update_execution(execution_id, phase=RUNNING, finished_at=None, error=None)
    if start:
        batch.event(EventRecord(execution_id, "", 0, RUNNING, now, f"{start} by {owner}"))
    metadata.apply(batch)
    return prior, reattach


def interrupt_unattached(
    attempts: list[AttemptRecord], reattach: Mapping[str, Reattach], batch: Batch, now: float
) -> list[AttemptRecord]:
    """Attempts to re-attach that the resumed run ended without submitting again (a cache
    hit, a failure elsewhere first), still RUNNING: recorded in `batch` as interrupted, and
    returned (their backends are to stop their work: `abandon`)."""
    found = []
    for a in attempts:
        again = reattach.get(a.node_id)
        if again is None or again.attempt != a.attempt or a.phase != RUNNING:
            continue
        found.append(dataclasses.replace(a))
        _interrupt(
            a,
            batch,
            now,
            "the engine process stopped during this attempt, and the resumed execution "
            f"ended without re-attaching to its work ({a.handle})",
            "interrupted",
        )
    return found


def abandon_unattached(
    attempts: list[AttemptRecord], backend_named: Callable[[str], Backend[Any]]
) -> None:
    """Hand each of `attempts` (interrupted without being re-attached) to the backend that
    recorded its handle, to stop its work (`Backend.abandon`). A backend that fails is
    logged: the execution has ended already."""
    for a in attempts:
        attempt_id = f"{a.execution_id}/{a.node_id}/{a.attempt}"
        try:
            backend = backend_named(a.backend.partition("@")[0])
            backend.abandon(attempt_id, a.handle)
        except Exception:
            log.exception(
                "could not stop the work of an attempt the resumed execution did not reach; "
                "it runs to its end unwatched",
                backend=a.backend,
                attempt_id=attempt_id,
                handle=a.handle,
            )
        else:
            log.info(
                "handed an attempt the resumed execution did not reach to its backend to stop",
                backend=a.backend,
                attempt_id=attempt_id,
            )


def end_unattached(
    metadata: MetadataStore,
    execution_id: str,
    reattach: Mapping[str, Reattach],
    backend_named: Callable[[str], Backend[Any]],
) -> None:
    """Attempts left running by a stopped engine process that the run ended without
    submitting again (a cache hit, a failure elsewhere first), still RUNNING in the database:
    recorded as interrupted, then handed to their backends to stop their work."""
    batch = Batch()
    running = metadata.attempts(execution_id, phase=RUNNING)
    abandoned = interrupt_unattached(running, reattach, batch, time.time())
    metadata.apply(batch)
    abandon_unattached(abandoned, backend_named)
