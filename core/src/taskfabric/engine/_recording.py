"""Recording an execution's transitions: node and attempt rows, events, progress callbacks
and plugin hooks, committed in groups (one transaction for the transitions of the loop turns
in a `commit_seconds` window), with the execution's heartbeat and the check for a cancel
request. The group is committed at once, whatever the window, before an attempt is handed
to its backend (`commit`): an attempt never runs before its start, and the end of every
attempt that ended before it, are in the database.

A commit holds everything recorded before it, in order: the database always shows the
execution as it was at one moment (a node's start is never committed without the end of the
node it depends on)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from taskfabric.engine._handles import handle_recorder
from taskfabric.engine._results import error_text
from taskfabric.engine._state import QUEUED, RUNNING, SUCCEEDED, TERMINAL, NodeState
from taskfabric.engine._util import CancelRequested
from taskfabric.logs import get_logger
from taskfabric.metadata import (
    AttemptRecord,
    Batch,
    EventRecord,
    MapItemsQueued,
    MapItemsStopped,
    MetadataStore,
    NodeRecord,
)
from taskfabric.plugin_api import LogLink, NodeEvent

log = get_logger("taskfabric.engine")

#: the phases of a map item that its row alone records (no event): see `Recorder.node`
_ITEM_PHASES_WITHOUT_EVENT = frozenset({RUNNING, SUCCEEDED})


class Recorder:
    """The write side of one execution's metadata, and the nodes that are not done yet."""

    def __init__(
        self,
        *,
        execution_id: str,
        metadata: MetadataStore,
        heartbeat_seconds: float,
        on_event: Callable[[NodeEvent], None] | None = None,
        hooks: Any = None,
        cancel_check_seconds: float = 1.0,
        commit_seconds: float = 0.0,
        cancels_since: float | None = None,
        cancel_check_at_once: bool = True,
        before_commit: Callable[[], None] | None = None,
    ) -> None:
        """`cancels_since`: when the execution was claimed (cancel requests count from
        then). Unless `cancel_check_at_once`, the first check for one waits a
        `cancel_check_seconds` from the claim, as every later check does from the one
        before: an execution claimed from the queue (`MetadataStore.claim_queued`, which
        takes QUEUED ones only, a request before it having aborted them there) that ends
        sooner reads none. `before_commit` runs before each commit (the documents whose
        URIs it records are written: `Documents.flush`)."""
        self._execution_id = execution_id
        self._before_commit = before_commit
        self._metadata = metadata
        self.heartbeat_seconds = heartbeat_seconds
        self.cancel_check_seconds = cancel_check_seconds
        self._commit_seconds = commit_seconds
        self._last_commit = float("-inf")  # time.monotonic() of the last commit
        # Whether the batch holds a write that waits no longer than `commit_seconds`, and
        # since when it holds one that may wait `lazy_seconds` (see `attempt(lazy=True)`):
        # the batch holds something exactly when either is set (every write sets one; a
        # heartbeat is committed at once), so no `Batch.__bool__` is asked per loop turn.
        self._urgent = False
        self._lazy_since: float | None = None
        self.lazy_seconds = cancel_check_seconds
        self._on_event = on_event
        self._hooks = hooks
        self._batch = Batch()
        # A task node's first QUEUED event, by node, while its first attempt may still start
        # before the next commit (its index in the batch's events), and the indices of those
        # whose attempt did start: see `node`.
        self._queued_events: dict[str, int] = {}
        self._dropped_events: list[int] = []
        #: called before each commit, and after it with whether it committed
        self._around: tuple[Callable[[], None], Callable[[bool], None]] | None = None
        self._active: dict[str, NodeState] = {}
        self._task_names: dict[int, str] = {}
        self._heartbeat_listeners: list[Callable[[], None]] = []
        self._loop_thread = threading.get_ident()  # the thread that records (the loop's)
        self._last_heartbeat = 0.0
        self._started = time.time()
        # The first flush looks for a cancel request at once: one made since the claim,
        # while this process loaded the code, must not wait for the first interval.
        self._last_cancel_check = 0.0
        if cancels_since is not None:  # cancel requests count from the claim, not from now
            self._started = min(self._started, cancels_since)
            # the claim wrote a heartbeat: the next is due a heartbeat's interval after it
            self._last_heartbeat = cancels_since
            if not cancel_check_at_once:
                self._last_cancel_check = cancels_since

    # -- what is written ---------------------------------------------------------------

    def node(self, ns: NodeState, message: str = "") -> NodeRecord:
        """Record the node's current state (and an event; progress callbacks and hooks
        hear of it at once, the database at the next `flush`); returns its row."""
        now = time.time()
        previous, ns.message = ns.message, message
        execution_id, full_id, phase = self._execution_id, ns.full_id, ns.phase
        parent = ns.parent if ns.parent is not None else ns.scope.owner
        task = ns.task
        self._urgent = True
        # (the fields by position, in NodeRecord's order: half the cost of keywords, three
        # rows a task; tests/engine/test_recording.py checks each field lands where it goes)
        record = NodeRecord(
            execution_id,
            full_id,
            ns.kind,
            phase,
            ns.name,
            "" if parent is None else parent.full_id,
            "" if task is None else (self._task_names.get(id(task)) or self._task_name(task)),
            ns.attempt,
            ns.inputs_uri,
            ns.outputs_uri,
            ns.started_at,
            ns.finished_at,
            ns.error,
            message,
            ns.cache_status,
        )
        self._batch.nodes[(execution_id, full_id)] = record  # (Batch.node, without a call)
        # A task node's plain transitions are its rows alone, which `MetadataStore.events`
        # reads as events (metadata/_events.py; docs/architecture.md, the `events` table):
        # its success (its node row: phase, finish, message; a cache hit's message names
        # the execution it came from), each attempt's start (the attempt's row), and its
        # first QUEUED when its first attempt starts before the next commit (the node row's
        # start). So a chain's commit touches no `events` b-tree (two of the five a task's
        # end and its successor's start changed). Its waits, retries, failures, skips and
        # aborts are events. A map item's start and success are its row's phase and times,
        # and not events at all (a map of a million items would write two million).
        events = self._batch.events
        if ns.kind == "task":
            if message and ns.cache_status != "hit":
                self._queued_events.pop(full_id, None)
                events.append(EventRecord(execution_id, full_id, ns.attempt, phase, now, message))
            elif phase == RUNNING:
                index = self._queued_events.pop(full_id, None)
                if index is not None:  # the QUEUED just before: it goes with the attempt row
                    if index == len(events) - 1:
                        events.pop()
                    else:
                        self._dropped_events.append(index)
            elif phase == QUEUED and not ns.attempt and not previous and not ns.recorded_before:
                self._queued_events[full_id] = len(events)
                events.append(EventRecord(execution_id, full_id, 0, phase, now, message))
            elif phase != SUCCEEDED:
                self._queued_events.pop(full_id, None)
                events.append(EventRecord(execution_id, full_id, ns.attempt, phase, now, message))
        elif ns.cache_status != "hit" and (
            message or ns.kind != "map_item" or phase not in _ITEM_PHASES_WITHOUT_EVENT
        ):
            events.append(EventRecord(execution_id, full_id, ns.attempt, phase, now, message))
        if phase in TERMINAL:
            self._active.pop(full_id, None)
        else:
            self._active[full_id] = ns
        if self._on_event is not None or self._hooks is not None:
            event = NodeEvent(
                execution_id,
                ns.full_id,
                ns.name,
                ns.kind,
                ns.phase,
                ns.attempt,
                message,
                ns.cache_status,
            )
            if self._on_event is not None:
                self._on_event(event)
            if self._hooks is not None:
                try:
                    self._hooks.taskfabric_node_event(event=event)
                except Exception:
                    log.exception("a plugin's taskfabric_node_event hook failed")
        return record

    def attempt(
        self,
        ns: NodeState,
        phase: str,
        err: dict[str, Any] | None = None,
        log_links: list[LogLink] | None = None,
        *,
        lazy: bool = False,
    ) -> AttemptRecord:
        """Record the node's current attempt in `phase`; returns its row. A `lazy` write (a
        running attempt's links) may wait `lazy_seconds` for its commit, or go with the next
        one: an attempt that ends sooner has its links written once, with its end, instead of
        a transaction of their own."""
        if lazy:
            if self._lazy_since is None:
                self._lazy_since = time.monotonic()
        else:
            self._urgent = True
        links = log_links or ns.log_links
        execution_id, full_id, attempt = self._execution_id, ns.full_id, ns.attempt
        # (by position, in AttemptRecord's order, as NodeRecord in `node`)
        record = AttemptRecord(
            execution_id,
            full_id,
            attempt,
            phase,
            ns.attempt_started_at,
            None if phase == RUNNING else time.time(),
            err,
            getattr(ns.backend, "name", ""),
            # Links given at the end replace those given while it ran; an attempt that is
            # stopped (timeout, abort) keeps those.
            [{"name": x.name, "uri": x.uri} for x in links] if links else [],
        )
        self._batch.attempts[(execution_id, full_id, attempt)] = record  # (Batch.attempt)
        return record

    def _task_name(self, task: Any) -> str:
        """The task's name, read once per template (by id(): the execution's templates are
        one object each, held by its Runner)."""
        name = self._task_names.get(id(task))
        if name is None:
            name = self._task_names[id(task)] = task.id.name
        return name

    def handle_recorder(self, node: NodeRecord, attempt: AttemptRecord) -> Callable[[str], None]:
        """The `record_handle` of an attempt starting, whose start `node` and `attempt`
        recorded: commits at once, from any thread (engine/_handles.py)."""
        return handle_recorder(self._metadata, node, attempt, with_loop=self._commit_handle)

    def _commit_handle(self, node: NodeRecord, attempt: AttemptRecord) -> bool:
        """On the loop's thread (a backend that records the handle as it submits): commit
        it now in one transaction with everything recorded so far, the attempt's start
        among it, instead of a transaction of its own. False on any other thread."""
        if threading.get_ident() != self._loop_thread:
            return False
        self._batch.attempt_handle(node, attempt)
        self._apply()
        return True

    def around_commit(self, before: Callable[[], None], after: Callable[[bool], None]) -> None:
        """Call `before()` ahead of each commit and `after(committed)` once it is over: the
        pools put their grants and releases in its transaction (engine/_pools.py)."""
        self._around = (before, after)

    def _apply(self) -> None:
        """Commit the batch (one transaction) and start a new one."""
        if self._before_commit is not None:
            self._before_commit()
        if self._queued_events:
            self._queued_events.clear()  # (their indices are this batch's)
        if self._dropped_events:
            dropped = set(self._dropped_events)
            self._dropped_events.clear()
            batch = self._batch
            batch.events = [e for i, e in enumerate(batch.events) if i not in dropped]
        around = self._around
        if around is None:
            self._metadata.apply(self._batch)
        else:
            around[0]()
            try:
                self._metadata.apply(self._batch)
            except BaseException:
                around[1](False)
                raise
            around[1](True)
        self._batch = Batch()
        self._last_commit = time.monotonic()
        self._urgent = False
        self._lazy_since = None

    def queue_items(self, map_node: NodeState, count: int, at: float) -> None:
        """Record the `count` items of `map_node` QUEUED, in bulk (one row each, written
        with the next commit; an item already SUCCEEDED, in an execution resumed, stays)."""
        self._urgent = True
        self._batch.queue_items(
            MapItemsQueued(
                execution_id=self._execution_id,
                parent_id=map_node.full_id,
                name=map_node.node.name,
                task_name=map_node.task.id.name if map_node.task is not None else "",
                count=count,
                at=at,
            )
        )

    def stop_items(self, map_node: NodeState, phase: str, message: str) -> None:
        """Record every item of `map_node` still QUEUED as `phase` (SKIPPED, ABORTED)."""
        self._urgent = True
        self._batch.stop_items(
            MapItemsStopped(self._execution_id, map_node.full_id, phase, time.time(), message)
        )

    def cache_entry(self, entry: Any) -> None:
        """A catalog entry, written in the same transaction as the node's success."""
        self._urgent = True
        self._batch.cache_entry(entry)

    def release_reservation(self, key: str, owner: str) -> None:
        self._urgent = True
        self._batch.release_reservation(key, owner)

    def execution(self, **values: Any) -> None:
        """Update columns of the execution's row."""
        self._urgent = True
        self._batch.update_execution(self._execution_id, **values)

    def execution_end(self, phase: str, error: dict[str, Any] | None) -> None:
        """Record the execution's end (committed with the next flush): its phase and error,
        and its owner released."""
        now = time.time()
        self._urgent = True
        self._batch.update_execution(
            self._execution_id,
            phase=phase,
            finished_at=now,
            error=error,
            owner="",
            heartbeat_at=now,
        )
        message = error_text(error) if error else ""
        self._batch.event(EventRecord(self._execution_id, "", 0, phase, now, message))

    # -- state -------------------------------------------------------------------------

    def active(self) -> list[NodeState]:
        """The recorded nodes that are not in a terminal phase, oldest first."""
        return list(self._active.values())

    def on_heartbeat(self, listener: Callable[[], None]) -> None:
        """Call `listener` with each heartbeat (before its transaction)."""
        self._heartbeat_listeners.append(listener)

    def commit_due_in(self) -> float | None:
        """Seconds until what is recorded must be committed; None when nothing waits."""
        if self._urgent:
            return max(0.0, self._last_commit + self._commit_seconds - time.monotonic())
        if self._lazy_since is None:
            return None  # nothing recorded
        return max(0.0, self._lazy_since + self.lazy_seconds - time.monotonic())

    def commit(self) -> None:
        """Commit what was recorded, now (no heartbeat, no cancel check). The attempts
        call it before they hand an attempt to its backend, so that no attempt runs before
        its start, and the end of every attempt before it, are in the database: a `kill -9`
        then costs only the attempts the database shows running."""
        if self._urgent or self._lazy_since is not None:
            self._apply()

    def flush(self, *, force: bool = False) -> None:
        """Commit what was recorded in one transaction, when `force` or when the oldest
        write has waited `commit_seconds` (a heartbeat, when one is due, goes with it).

        Raises CancelRequested when someone asked to cancel the execution (checked at most
        every `cancel_check_seconds`)."""
        now = time.time()
        if force or now - self._last_heartbeat >= self.heartbeat_seconds:
            self._batch.update_execution(self._execution_id, heartbeat_at=now)
            self._last_heartbeat = now
            for listener in self._heartbeat_listeners:
                listener()
            self._apply()
        elif self.commit_due_in() == 0.0:
            self._apply()
        if now - self._last_cancel_check >= self.cancel_check_seconds:
            self._last_cancel_check = now
            reason = self._metadata.cancel_requested(self._execution_id, self._started)
            if reason is not None:
                raise CancelRequested(reason)
