"""The attempt lifecycle of task nodes: a queue of attempts to start, their resource pools,
submitting them to their backends, the wake-ups and polls that tell how they went, and what
happens when one ends (success, failure and its retry, a timeout, a lost pool lease)."""

from __future__ import annotations

import queue
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2
from taskfabric.engine._documents import Documents
from taskfabric.engine._handles import INTERRUPTED
from taskfabric.engine._pools import PoolGate
from taskfabric.engine._recording import Recorder
from taskfabric.engine._state import (
    ABORTED,
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    NodeState,
)
from taskfabric.engine._timers import Timers
from taskfabric.engine._util import error_dict, system_error, user_error
from taskfabric.logs import get_logger
from taskfabric.plugin_api import AttemptPhase, AttemptStatus, Backend, LogLink, TaskAttempt

log = get_logger("taskfabric.engine")


class NodeOutcomes(Protocol):
    """What the attempts tell the execution's nodes (the Runner)."""

    @property
    def stopping(self) -> bool:
        """The execution is failing: start no attempt and retry none."""
        ...

    def succeeded(self, ns: NodeState, outputs: types_pb2.LiteralMap) -> None:
        """The node's attempt produced its outputs."""
        ...

    def fail(self, ns: NodeState, err: execution_pb2.ExecutionError, *, phase: str = ...) -> None:
        """The node failed for good (no retry left, or not retryable)."""
        ...


class Attempts:
    """Starts, watches and ends the attempts of one execution's task nodes.

    Attempts run at most `parallelism` at a time (those waiting for pools count), a map's
    items at most its `concurrency`, and each only while it holds its pools."""

    def __init__(
        self,
        *,
        execution_id: str,
        project: str,
        domain: str,
        backend_for: Callable[[tasks_pb2.TaskTemplate], Backend[Any]],
        parallelism: int,
        pools: PoolGate | None,
        documents: Documents,
        recorder: Recorder,
        timers: Timers,
        nodes: NodeOutcomes,
        code_path: tuple[str, ...] = (),
    ) -> None:
        self._execution_id = execution_id
        self._code_path = code_path
        self._project = project
        self._domain = domain
        self._backend_for = backend_for
        # By id() of a task's template (the execution's tasks are one object each, held by
        # the Runner for as long as this lives: no protobuf field read per attempt):
        # its backend (one execution's tasks keep theirs: the config is fixed), and its
        # timeout in seconds (0: none)
        self._backends: dict[int, Backend[Any]] = {}
        self._timeouts: dict[int, float] = {}
        self._parallelism = max(1, parallelism)
        self._pools = pools
        self._documents = documents
        self._recorder = recorder
        self._timers = timers
        self._nodes = nodes
        self._runnable: deque[NodeState] = deque()
        self._running: dict[str, NodeState] = {}
        # attempts granted their pools by a release: they start at the next dispatch
        self._granted: deque[NodeState] = deque()
        self._polled: dict[Backend[Any], float] = {}
        self._wakeups: queue.SimpleQueue[str] = queue.SimpleQueue()
        # map nodes with a concurrency limit: items running, items waiting for a slot
        self._map_running: dict[NodeState, int] = {}
        self._map_waiting: dict[NodeState, deque[NodeState]] = {}
        # how many of a map's items may wait to start, made, before more are made
        self._item_room = max(4 * self._parallelism, 256)
        if pools is not None and pools.folds:
            recorder.around_commit(pools.before_commit, pools.committed)

    # -- what the loop asks ------------------------------------------------------------

    def queue(self, ns: NodeState) -> None:
        """Queue the node's next attempt (its inputs are stored)."""
        self._runnable.append(ns)

    def wants_items(self, map_node: NodeState) -> bool:
        """Whether another item of `map_node` may be made to wait for its start (a map's
        items are made as room frees up, so a million of them never exist at once)."""
        room = self._item_room
        waiting = self._map_waiting.get(map_node)
        return len(self._runnable) < room and (waiting is None or len(waiting) < room)

    def clear_queue(self) -> None:
        """Drop the attempts that have not started (the execution is failing or aborted)."""
        self._runnable.clear()

    def has_running(self) -> bool:
        return bool(self._running)

    def running_under(self, prefix: str) -> bool:
        """Whether an attempt runs for a node whose id starts with `prefix`."""
        return any(ns.full_id.startswith(prefix) for ns in self._running.values())

    def idle(self) -> bool:
        """Nothing runs, waits to start, or waits for a pool."""
        return not (
            self._running
            or self._runnable
            or self._granted
            or (self._pools is not None and self._pools.waiting)
        )

    def subscribe_to_pools(self) -> Callable[[], None]:
        """Wake the loop when another engine process grants one of our waiters a pool lease
        (so it starts at once); returns the unsubscribe."""
        if self._pools is None:
            return lambda: None
        wakeups = self._wakeups
        return self._pools.subscribe(lambda: wakeups.put(""))

    def dispatch(self) -> None:
        """Start what may start: attempts granted their pools, then queued attempts; then
        hand them to their backends."""
        started: list[tuple[NodeState, TaskAttempt]] = []
        if self._granted:
            granted = list(self._granted)
            self._granted.clear()
            self._start_granted(granted, started)
        pools = self._pools
        if pools is not None:
            self._start_granted(pools.poll(), started)
        runnable = self._runnable
        while runnable and self._in_flight() < self._parallelism and not self._nodes.stopping:
            ns = runnable.popleft()
            if ns.phase in TERMINAL:
                continue
            parent = ns.parent
            if parent is not None and parent.kind == "map":
                if parent.phase in TERMINAL:
                    continue
                limit = parent.node.map.concurrency
                if limit:
                    running = self._map_running.get(parent, 0)
                    if running >= limit:
                        self._map_waiting.setdefault(parent, deque()).append(ns)
                        continue
                    self._map_running[parent] = running + 1
            if pools is not None and not self._acquire_pools(pools, ns):
                continue
            started.append(self._start(ns))
        self._submit(started)
        if pools is not None:
            pools.settle()  # a grant's transaction that no start went with

    def renew_leases(self) -> None:
        """Renew the pool leases of running attempts when due; stop those that lost theirs."""
        if self._pools is None:
            return
        if self._pools.pending:  # no commit of this loop turn carried them
            self._pools.release_pending()
        for ns in self._pools.renew():
            if ns.attempt_id not in self._running:
                continue
            if ns.backend is not None:
                ns.backend.cancel(ns.attempt_id)
            self._over(ns)
            self._failed(
                ns,
                system_error(
                    "PoolLeaseLost",
                    "the attempt's resource pool lease expired (the engine was "
                    "stalled past the lease TTL); it was stopped so the pool is not overrun",
                    retryable=True,
                ),
            )

    def wait(self, timeout: float) -> None:
        """Sleep until a backend reports on an attempt (at most `timeout`; less when a
        backend is polled or attempts wait for pools), then handle every report."""
        for backend in self._polled:
            assert backend.poll_interval is not None
            timeout = min(timeout, backend.poll_interval)
        if self._pools is not None:
            pool_wait = self._pools.next_wait()
            if pool_wait is not None:
                timeout = min(timeout, pool_wait)
        wakeups = self._wakeups
        try:
            self._handle_wakeup(wakeups.get(timeout=timeout))
        except queue.Empty:
            return
        while not wakeups.empty():  # (not get_nowait's Empty: one exception a turn)
            self._handle_wakeup(wakeups.get_nowait())

    def poll_backends(self) -> None:
        """Ask the backends that are polled (not notifying) how their attempts go."""
        if not self._polled:
            return
        now = time.monotonic()
        for backend, last in list(self._polled.items()):
            assert backend.poll_interval is not None
            if now - last < backend.poll_interval:
                continue
            self._polled[backend] = now
            for attempt_id, ns in list(self._running.items()):
                if ns.backend is backend:
                    self._handle_wakeup(attempt_id)

    def release_pools(self) -> None:
        """Give up every pool lease and queue place (the execution ended)."""
        if self._pools is not None:
            self._pools.release_everything()

    def stop(self) -> None:
        """The engine process stops: cancel the running attempts and give up their pools;
        nothing is recorded as ended (the execution is resumed later)."""
        for attempt_id, ns in list(self._running.items()):
            if ns.backend is not None:
                ns.backend.cancel(attempt_id)
        self.release_pools()

    def abort(self, reason: str) -> None:
        """Cancel the running attempts and record them ABORTED; give up the pools."""
        for attempt_id, ns in list(self._running.items()):
            try:
                if ns.backend is not None:
                    ns.backend.cancel(attempt_id)
            except Exception:
                log.exception("cancel failed", node_id=ns.full_id)
            self._recorder.attempt(
                ns, ABORTED, {"kind": "system", "code": "Aborted", "message": reason}
            )
        self._running.clear()
        self._runnable.clear()
        try:
            self.release_pools()
        except Exception:
            log.exception("could not release pool leases; they expire after their TTL")

    # -- starting ----------------------------------------------------------------------

    def _in_flight(self) -> int:
        """Attempts running or waiting for their pools: both count against parallelism, so
        one loop turn asks the pools for at most `parallelism` grants and stays short (a
        turn that took longer than a lease TTL would let granted leases expire unrenewed)."""
        waiting = len(self._pools.waiting) if self._pools is not None else 0
        return len(self._running) + waiting

    def _acquire_pools(self, pools: PoolGate, ns: NodeState) -> bool:
        """Take the attempt's pools, or queue it in them (its node says where)."""
        assert ns.task is not None
        weights = pools.weights(ns, self._backend_of(ns.task))
        if not weights:
            return True
        try:
            if pools.acquire(ns, ns.attempt + 1, weights):
                return True
        except Exception as exc:  # PoolError: a request that can never be granted
            self._nodes.fail(ns, system_error(type(exc).__name__, str(exc)))
            return False
        ns.phase = QUEUED
        self._recorder.node(ns, "waiting for " + pools.position_text(ns, ns.attempt + 1))
        return False

    def _backend_of(self, task: tasks_pb2.TaskTemplate) -> Backend[Any]:
        backend = self._backends.get(id(task))
        if backend is None:
            backend = self._backends[id(task)] = self._backend_for(task)
        return backend

    def _start_granted(
        self, nodes: list[NodeState], started: list[tuple[NodeState, TaskAttempt]]
    ) -> None:
        for ns in nodes:
            if ns.phase == QUEUED and not self._nodes.stopping:
                started.append(self._start(ns))

    def _start(self, ns: NodeState) -> tuple[NodeState, TaskAttempt]:
        """Record the node's next attempt as running; `_submit` hands it to its backend."""
        assert ns.task is not None and ns.inputs is not None
        ns.attempt += 1
        ns.attempt_started_at = time.time()
        ns.log_links = []
        ns.phase = RUNNING
        ns.outputs_uri = self._documents.uri(ns.full_id, "outputs.pb")
        backend = self._backend_of(ns.task)
        ns.backend = backend
        handle, ns.handle = ns.handle, ""
        ns.reattached = bool(handle)
        spec = TaskAttempt(
            attempt_id=ns.attempt_id,
            execution_id=self._execution_id,
            node_id=ns.full_id,
            attempt=ns.attempt,
            task=ns.task,
            inputs=ns.inputs,
            inputs_uri=ns.inputs_uri,
            outputs_uri=ns.outputs_uri,
            raw_prefix=self._documents.uri(ns.full_id, f"raw/{ns.attempt}"),
            notify=self._wakeups.put,
            task_definition=ns.task_def,
            project=self._project,
            domain=self._domain,
            handle=handle,
            # the handle, once known, goes on the rows that record this start
            record_handle=self._recorder.handle_recorder(
                self._recorder.node(ns), self._recorder.attempt(ns, RUNNING)
            ),
            code_path=self._code_path,
        )
        if self._pools is not None:
            self._pools.attach(spec)
        self._running[spec.attempt_id] = ns
        if backend.poll_interval is not None:
            self._polled.setdefault(backend, 0.0)
        task = ns.task
        timeout = self._timeouts.get(id(task))
        if timeout is None:
            timeout = task.timeout.ToTimedelta().total_seconds() if task.HasField("timeout") else 0
            self._timeouts[id(task)] = timeout
        if timeout > 0:
            self._timers.after(timeout, ns, self._timeout_due)
        return ns, spec

    def _submit(self, started: list[tuple[NodeState, TaskAttempt]]) -> None:
        """Hand the attempts this turn started to their backends: the items of one map node
        together to a backend that takes them so (`Backend.submit_map_items`), any other
        attempt alone (`Backend.submit`).

        What was recorded is committed first: the attempts' starts, and the ends of the
        attempts that ended before them. So the attempts that a `kill -9` of the engine can
        cost are those the database shows running (at most `parallelism`: each holds a
        slot), which a resume runs again; never one whose end had freed a slot for another.
        When every attempt goes to a backend that records a handle before its work begins
        (`Backend.handle_before_start`), that commit is the first handle's (`Recorder`'s
        `_commit_handle`: everything recorded so far, with the handle): one transaction
        instead of two.
        """
        if not started:
            return
        self._documents.flush()  # the inputs they read
        together: dict[tuple[NodeState, Backend[Any]], list[tuple[NodeState, TaskAttempt]]] = {}
        alone: list[tuple[NodeState, TaskAttempt]] = []
        for ns, spec in started:
            backend, parent = ns.backend, ns.parent
            assert backend is not None
            if parent is not None and parent.kind == "map" and _takes_map_items(backend):
                together.setdefault((parent, backend), []).append((ns, spec))
            else:
                alone.append((ns, spec))
        if (
            together
            or (self._pools is not None and self._pools.writing)  # grants go with this one
            or not _handles_before_start(alone)
        ):
            self._recorder.commit()
        for ns, spec in alone:
            backend = ns.backend
            assert backend is not None
            try:
                backend.submit(spec)
            except Exception as exc:
                log.exception("backend submit failed", node_id=ns.full_id, backend=backend.name)
                self._submit_failed([ns], backend, exc)
        for (_, backend), items in together.items():
            try:
                backend.submit_map_items([spec for _, spec in items])
            except Exception as exc:
                log.exception(
                    "backend submit of map items failed",
                    node_ids=[ns.full_id for ns, _ in items],
                    backend=backend.name,
                )
                self._submit_failed([ns for ns, _ in items], backend, exc)

    def _submit_failed(self, nodes: list[NodeState], backend: Backend[Any], exc: Exception) -> None:
        for ns in nodes:
            self._over(ns)
            self._failed(
                ns,
                system_error(
                    type(exc).__name__,
                    f"backend '{backend.name}' could not submit: {exc}",
                    retryable=True,
                ),
            )

    # -- ending ------------------------------------------------------------------------

    def _handle_wakeup(self, attempt_id: str) -> None:
        ns = self._running.get(attempt_id)
        if ns is None or ns.backend is None:
            return
        status = ns.backend.poll(attempt_id)
        if status.phase is not AttemptPhase.RUNNING:
            self._ended(ns, status)
            return
        if status.log_links and status.log_links != ns.log_links:
            # Links to follow the attempt while it runs (a live log, a job's page).
            ns.log_links = list(status.log_links)
            self._recorder.attempt(ns, RUNNING, lazy=True)
        if status.pushback:
            # Throttled while running (the backend waits and tries again itself): the pool
            # grants nothing new for that long.
            self._pushback(ns, status.pushback)

    def _pushback(self, ns: NodeState, seconds_by_pool: Mapping[str, float]) -> None:
        if self._pools is not None:
            holder = self._pools.holder(ns, ns.attempt)
            for pool, seconds in seconds_by_pool.items():
                self._pools.manager.pushback(pool, seconds, holder=holder)

    def _ended(self, ns: NodeState, status: AttemptStatus) -> None:
        self._pushback(ns, status.pushback)
        self._over(ns)
        if status.phase is not AttemptPhase.SUCCEEDED:
            err = (
                status.error.to_proto()
                if status.error is not None
                else system_error("Unknown", status.message or "attempt failed")
            )
            self._failed(ns, err, log_links=status.log_links)
            return
        too_large = self._outputs_too_large(ns, status)
        if too_large:
            self._failed(ns, user_error("OutputsTooLarge", too_large), log_links=status.log_links)
            return
        self._recorder.attempt(ns, SUCCEEDED, log_links=status.log_links)
        outputs = status.outputs
        if outputs is None:
            try:
                outputs = self._documents.load(status.outputs_uri or ns.outputs_uri)
            except Exception as exc:
                self._failed(
                    ns,
                    system_error(
                        "OutputsMissing",
                        f"the backend reported success but the outputs cannot be read: {exc}",
                        retryable=True,
                    ),
                )
                return
        if status.outputs_uri:
            ns.outputs_uri = status.outputs_uri
        self._nodes.succeeded(ns, outputs)

    def _outputs_too_large(self, ns: NodeState, status: AttemptStatus) -> str:
        """Why the attempt's outputs are refused as too large ("" when they are not), told
        without reading a stored document (its size is asked of the store)."""
        limit = self._documents.max_output_bytes
        if limit is None:
            return ""
        assert ns.task is not None
        if status.outputs is not None:
            size: int | None = status.outputs.ByteSize()
        else:
            try:
                size = self._documents.size(status.outputs_uri or ns.outputs_uri)
            except Exception:
                return ""  # missing: the load below says so
        if size is None or size <= limit:  # (the task's name read only for the message)
            return ""
        return self._documents.outputs_too_large(ns.task.id.name, size)

    def _over(self, ns: NodeState) -> None:
        """Bookkeeping when an attempt stops occupying a slot (its pools included)."""
        self._running.pop(ns.attempt_id, None)
        if ns.backend is not None:
            ns.backend.release(ns.attempt_id)
        if self._pools is not None:
            self._pools.detach(ns.attempt_id)
            self._granted.extend(self._pools.release(ns, ns.attempt))
        parent = ns.parent
        if parent is not None and parent in self._map_running:
            self._map_running[parent] -= 1
            waiting = self._map_waiting.get(parent)
            if waiting:
                self._runnable.appendleft(waiting.popleft())

    def _failed(
        self,
        ns: NodeState,
        err: execution_pb2.ExecutionError,
        *,
        phase: str = FAILED,
        log_links: list[LogLink] | None = None,
    ) -> None:
        """The attempt failed: retry it after its backoff, or fail the node."""
        assert ns.task is not None
        edict = error_dict(err)
        self._recorder.attempt(ns, phase, edict, log_links)
        retry = ns.task.retry
        # A re-attached attempt whose work ended with the engine that watched it runs again,
        # as an interrupted attempt always did on resume: the task's retries are not spent.
        interrupted = ns.reattached and err.code == INTERRUPTED
        if (
            err.retryable
            and (interrupted or ns.failures < retry.retries)
            and not self._nodes.stopping
        ):
            if interrupted:
                delay = 0.0
            else:
                ns.failures += 1
                base = retry.initial_backoff.ToTimedelta().total_seconds()
                mult = retry.backoff_multiplier or 2.0
                cap = retry.max_backoff.ToTimedelta().total_seconds() or float("inf")
                delay = min(base * mult ** (ns.failures - 1), cap)
            ns.phase = RETRYING
            ns.error = edict
            what = "running again" if interrupted else f"retry {ns.failures}/{retry.retries}"
            self._recorder.node(ns, f"{what} in {delay:.1f}s after {err.code}: {err.message}"[:500])
            log.info(
                "attempt failed, will retry",
                node_id=ns.full_id,
                attempt=ns.attempt,
                code=err.code,
                delay_s=delay,
            )
            self._timers.after(delay, ns, self._retry_due)
            return
        self._nodes.fail(ns, err, phase=phase)

    def _retry_due(self, ns: NodeState) -> None:
        if ns.phase == RETRYING and not self._nodes.stopping:
            ns.phase = QUEUED
            self._runnable.append(ns)

    def _timeout_due(self, ns: NodeState) -> None:
        if ns.phase != RUNNING or ns.attempt_id not in self._running:
            return
        assert ns.task is not None
        if ns.backend is not None:
            ns.backend.cancel(ns.attempt_id)
        self._over(ns)
        secs = ns.task.timeout.ToTimedelta().total_seconds()
        self._failed(
            ns,
            system_error(
                "Timeout",
                f"attempt {ns.attempt} ran longer than its timeout of {secs:g}s",
                retryable=True,
            ),
            phase=TIMED_OUT,
        )


def _handles_before_start(started: list[tuple[NodeState, TaskAttempt]]) -> bool:
    """Every attempt goes to a backend that records a handle before its work begins."""
    # (a loop, not all() over a generator: the generator's close costs an exception)
    for ns, _ in started:  # noqa: SIM110
        if ns.backend is None or not ns.backend.handle_before_start:
            return False
    return True


def _takes_map_items(backend: Backend[Any]) -> bool:
    """The backend starts a map's items together (it overrides `submit_map_items`)."""
    return type(backend).submit_map_items is not Backend.submit_map_items
