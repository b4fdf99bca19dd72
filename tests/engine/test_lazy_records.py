"""A running attempt's links wait up to `lazy_seconds` for their commit (an attempt that ends
sooner writes them once, with its end), where any other transition waits `commit_seconds`;
an execution claimed from the queue first looks for a cancel request an interval after its
claim. Deadlines compared, never waited for."""

from __future__ import annotations

import time
from typing import Any

from taskfabric.engine._recording import Recorder
from taskfabric.metadata import Batch


class _Store:
    def __init__(self) -> None:
        self.batches: list[Batch] = []
        self.cancel_reads = 0

    def apply(self, batch: Batch) -> None:
        self.batches.append(batch)

    def cancel_requested(self, execution_id: str, since: float) -> str | None:
        self.cancel_reads += 1
        return None


class _Node:
    full_id = "n0"
    attempt = 1
    attempt_started_at = 1.0
    log_links: list[Any] = []
    backend = None


def _recorder(store: _Store, **kwargs: Any) -> Recorder:
    return Recorder(
        execution_id="e",
        metadata=store,  # type: ignore[arg-type]
        heartbeat_seconds=3600,
        commit_seconds=0.05,
        cancel_check_seconds=1.0,
        **kwargs,
    )


def test_running_links_wait_for_the_next_commit_or_a_second() -> None:
    store = _Store()
    recorder = _recorder(store)
    recorder.attempt(_Node(), "RUNNING", lazy=True)  # type: ignore[arg-type]
    due = recorder.commit_due_in()
    assert due is not None and 0.5 < due <= 1.0
    recorder.attempt(_Node(), "SUCCEEDED")  # type: ignore[arg-type]  # its end: not lazy
    due = recorder.commit_due_in()
    assert due is not None and due <= 0.05
    recorder.commit()
    ((written,),) = [list(b.attempts.values()) for b in store.batches]
    assert written.phase == "SUCCEEDED"  # one row write for both
    assert recorder.commit_due_in() is None


def test_a_claimed_execution_checks_for_cancels_an_interval_after_its_claim() -> None:
    store = _Store()
    claimed = time.time()
    _recorder(store, cancels_since=claimed, cancel_check_at_once=False).flush()
    assert store.cancel_reads == 0
    _recorder(store, cancels_since=claimed - 2).flush()  # a resume's: at once
    assert store.cancel_reads == 1
    _recorder(store, cancels_since=claimed - 2, cancel_check_at_once=False).flush()
    assert store.cancel_reads == 2  # its interval is over
