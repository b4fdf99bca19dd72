"""The execution loop: drives one execution's DAG to its end.

One thread (the caller's) owns all state. Backends report attempt ends through
`notify`, which wakes the loop; timers drive retries and timeouts. Every transition is
recorded in a batch that is committed once per loop turn, so a chain of tasks costs one
transaction per task and a wide fan-out far less than one per task.
"""

from __future__ import annotations

import heapq
import itertools
import queue
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from taskfabric.catalog import Catalog
from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2, workflow_pb2
from taskfabric.engine._bindings import BindingError, coerce, needs_coercion, resolve
from taskfabric.engine._handles import Reattach
from taskfabric.engine._pools import PoolGate
from taskfabric.engine._state import (
    ABORTED,
    FAILED,
    QUEUED,
    RETRYING,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    TERMINAL,
    NodeState,
    Scope,
)
from taskfabric.logs import get_logger
from taskfabric.metadata import AttemptRecord, Batch, EventRecord, MetadataStore, NodeRecord
from taskfabric.plugin_api import AttemptStatus, Backend, LogLink, NodeEvent
from taskfabric.sdk._compiler import node_dependencies
from taskfabric.storage import BlobStore, PackStore

log = get_logger("taskfabric.engine")

_SYSTEM = execution_pb2.ErrorKind.ERROR_KIND_SYSTEM


from taskfabric.engine import _attempts, _caching, _composite  # noqa: E402
from taskfabric.engine._util import (  # noqa: E402
    CancelRequested,
    EngineShutdown,
    RunOutcome,
    _system_error,
    error_dict,
    node_key,
)


class Runner:
    """Runs (or resumes) one execution to a terminal phase."""

    def __init__(
        self,
        *,
        execution_id: str,
        compiled: workflow_pb2.CompiledWorkflow,
        inputs: types_pb2.LiteralMap,
        task_defs: Mapping[str, Any],
        backend_for: Callable[[tasks_pb2.TaskTemplate], Backend[Any]],
        store: BlobStore,
        metadata: MetadataStore,
        parallelism: int,
        heartbeat_seconds: float,
        prior_nodes: Mapping[str, NodeRecord] | None = None,
        on_event: Callable[[NodeEvent], None] | None = None,
        literals: PackStore | None = None,
        catalog: Catalog | None = None,
        overwrite_cache: bool = False,
        hooks: Any = None,
        pools: PoolGate | None = None,
        project: str = "",
        domain: str = "",
        reattach: Mapping[str, Reattach] | None = None,
    ) -> None:
        self.execution_id = execution_id
        # Attempts a stopped engine process left running with a handle, by node id: submitted
        # again (same number) with it. What is left here at the end was never re-submitted.
        self.reattach = dict(reattach or {})
        self.compiled = compiled
        self.inputs = inputs
        self.task_defs = task_defs
        self.backend_for = backend_for
        self.store = store
        self.metadata = metadata
        self.parallelism = max(1, parallelism)
        self.heartbeat_seconds = heartbeat_seconds
        self.prior = dict(prior_nodes or {})
        self.on_event = on_event
        self.literals = literals or PackStore(store)
        self.hooks = hooks
        self.pools = pools
        self.pool_granted: deque[NodeState] = deque()
        self.catalog = catalog
        self.overwrite_cache = overwrite_cache
        self.cache_poll_seconds = 0.2
        self._interface_hashes: dict[str, str] = {}
        self.project = project
        self.domain = domain
        self.tasks = {t.id.name: t for t in compiled.tasks}
        self.subworkflows = {w.id.name: w for w in compiled.subworkflows}
        self.runnable: deque[NodeState] = deque()
        self.ready: deque[NodeState] = deque()
        self.running: dict[str, NodeState] = {}
        self.active: dict[str, NodeState] = {}
        self.timers: list[tuple[float, int, str, NodeState, int]] = []
        self._seq = itertools.count()
        self.wakeups: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.batch = Batch()
        self.failing: dict[str, Any] | None = None
        self.outcome: RunOutcome | None = None
        self._last_heartbeat = 0.0
        self._started = self._last_cancel_check = time.time()
        self.cancel_check_seconds = 1.0
        self._polled: dict[Backend[Any], float] = {}
        self._uri_root = store.uri("executions", execution_id)
        self.root_scope = Scope("", compiled.primary, inputs)

    # -- helpers -----------------------------------------------------------------------

    def _uri(self, full_id: str, name: str) -> str:
        return f"{self._uri_root}/{node_key(full_id, name)}"

    def _load_outputs(self, uri: str) -> types_pb2.LiteralMap:
        out = types_pb2.LiteralMap()
        out.ParseFromString(self.literals.get(uri))
        return out

    def _put_map(self, full_id: str, name: str, m: types_pb2.LiteralMap) -> str:
        """Store a node's document; returns its URI (packed for local stores)."""
        return self.literals.put(
            self._uri_root, node_key(full_id, name), m.SerializeToString(deterministic=True)
        )

    def _record(self, ns: NodeState, message: str = "") -> None:
        now = time.time()
        ns.message = message
        self.batch.node(
            NodeRecord(
                execution_id=self.execution_id,
                node_id=ns.full_id,
                kind=ns.kind,
                phase=ns.phase,
                name=ns.name,
                parent_id=ns.parent.full_id
                if ns.parent is not None
                else (ns.scope.owner.full_id if ns.scope.owner is not None else ""),
                task_name=ns.task.id.name if ns.task is not None else "",
                attempts=ns.attempt,
                inputs_uri=ns.inputs_uri,
                outputs_uri=ns.outputs_uri,
                started_at=ns.started_at,
                finished_at=ns.finished_at,
                error=ns.error,
                message=message,
                cache_status=ns.cache_status,
            )
        )
        self.batch.event(
            EventRecord(self.execution_id, ns.full_id, ns.attempt, ns.phase, now, message)
        )
        if ns.phase in TERMINAL:
            self.active.pop(ns.full_id, None)
        else:
            self.active[ns.full_id] = ns
        if self.on_event is not None or self.hooks is not None:
            event = NodeEvent(
                self.execution_id,
                ns.full_id,
                ns.name,
                ns.kind,
                ns.phase,
                ns.attempt,
                message,
                ns.cache_status,
            )
            if self.on_event is not None:
                self.on_event(event)
            if self.hooks is not None:
                try:
                    self.hooks.taskfabric_node_event(event=event)
                except Exception:
                    log.exception("a plugin's taskfabric_node_event hook failed")

    def _record_attempt(
        self,
        ns: NodeState,
        phase: str,
        err: dict[str, Any] | None = None,
        log_links: list[LogLink] | None = None,
    ) -> None:
        self.batch.attempt(
            AttemptRecord(
                execution_id=self.execution_id,
                node_id=ns.full_id,
                attempt=ns.attempt,
                phase=phase,
                started_at=ns.attempt_started_at,
                finished_at=None if phase == RUNNING else time.time(),
                error=err,
                backend=getattr(ns.backend, "name", ""),
                # Links given at the end replace those given while it ran; an attempt that
                # is stopped (timeout, abort) keeps those.
                log_links=[{"name": x.name, "uri": x.uri} for x in log_links or ns.log_links],
            )
        )

    def _flush(self, force_heartbeat: bool = False) -> None:
        now = time.time()
        if force_heartbeat or now - self._last_heartbeat >= self.heartbeat_seconds:
            self.batch.update_execution(self.execution_id, heartbeat_at=now)
            self._last_heartbeat = now
            held = [
                (ns.cache_key, self._cache_owner(ns))
                for ns in self.active.values()
                if ns.cache_reserved
            ]
            if held and self.catalog is not None:
                self.catalog.heartbeat(held, ttl=3 * self.heartbeat_seconds)
        if self.batch:
            self.metadata.apply(self.batch)
            self.batch = Batch()
        if now - self._last_cancel_check >= self.cancel_check_seconds:
            self._last_cancel_check = now
            reason = self.metadata.cancel_requested(self.execution_id, self._started)
            if reason is not None:
                raise CancelRequested(reason)

    def _timer(self, when: float, kind: str, ns: NodeState) -> None:
        heapq.heappush(self.timers, (when, next(self._seq), kind, ns, ns.attempt))

    # -- building ----------------------------------------------------------------------

    def _start_scope(self, scope: Scope) -> None:
        local_ids = {n.id for n in scope.template.nodes}
        states = []
        for node in scope.template.nodes:
            ns = self._make_node(scope.prefix + node.id, node, scope)
            ns.deps = node_dependencies(node) & local_ids
            scope.nodes[node.id] = ns
            states.append(ns)
        for ns in states:
            for dep in ns.deps:
                scope.nodes[dep].dependents.append(ns)
        scope.remaining = len(states)
        if not states:
            self._scope_done(scope)
            return
        # Decide the initial set first: readying one node can ready its dependents.
        for ns in [ns for ns in states if not ns.deps]:
            self._ready(ns)

    def _make_node(
        self, full_id: str, node: workflow_pb2.Node, scope: Scope, parent: NodeState | None = None
    ) -> NodeState:
        kind = node.WhichOneof("target") or "task"
        ns = NodeState(
            full_id=full_id,
            node=node,
            scope=scope,
            kind=kind,
            parent=parent,
            scope_execution_id=self.execution_id,
        )
        if kind in ("task", "map"):
            task_id = node.task.task_id if kind == "task" else node.map.task_id
            ns.task = self.tasks[task_id.name]
            ns.task_def = self.task_defs.get(task_id.name)
        prior = self.prior.get(full_id)
        if prior is not None:
            ns.attempt = prior.attempts
        again = self.reattach.get(full_id)
        if again is not None:
            ns.attempt, ns.handle = again.attempt - 1, again.handle  # the next start is it
        return ns

    def _resolve_inputs(
        self, ns: NodeState, input_types: Mapping[str, types_pb2.LiteralType]
    ) -> types_pb2.LiteralMap:
        out = types_pb2.LiteralMap()
        scope = ns.scope
        mapped = set(ns.node.map.mapped_inputs) if ns.kind == "map" else set()
        for b in ns.node.inputs:
            lit = resolve(b.binding, scope.inputs, scope.outputs)
            target = input_types.get(b.var)
            if target is not None:
                if b.var in mapped:
                    target = types_pb2.LiteralType(list_type=target)
                if needs_coercion(target):
                    lit = coerce(lit, target)
            out.literals[b.var].CopyFrom(lit)
        return out

    # -- transitions -------------------------------------------------------------------

    def _ready(self, ns: NodeState) -> None:
        """All of `ns`'s upstream nodes succeeded: queue it to start.

        Nodes are started from a queue, not by recursion, so that a long chain of nodes that
        complete at once (cache hits, outputs recorded before a resume) does not grow the stack.
        """
        self.ready.append(ns)

    def _drain_ready(self) -> None:
        while self.ready:
            self._start_node(self.ready.popleft())

    def _start_node(self, ns: NodeState) -> None:
        """Start `ns` (or reuse its recorded or cached outputs)."""
        if self.failing is not None or ns.started_at is not None:
            return
        prior = self.prior.get(ns.full_id)
        if prior is not None and prior.phase == SUCCEEDED and prior.outputs_uri:
            try:
                outputs = self._load_outputs(prior.outputs_uri)
            except Exception as exc:
                log.warning(
                    "recorded outputs unreadable, running node again",
                    node_id=ns.full_id,
                    error=str(exc),
                )
            else:
                ns.outputs_uri = prior.outputs_uri
                ns.inputs_uri = prior.inputs_uri
                ns.phase = SUCCEEDED
                ns.started_at, ns.finished_at = prior.started_at, prior.finished_at
                self._succeeded(ns, outputs, record=False)
                return
        ns.started_at = time.time()
        try:
            if ns.kind in ("task", "map_item"):
                if ns.kind == "task":
                    assert ns.task is not None
                    types = {i.name: i.type for i in ns.task.interface.inputs}
                    ns.inputs = self._resolve_inputs(ns, types)
                if not self._cache_lookup(ns):
                    self._enqueue(ns)
            elif ns.kind == "map":
                self._start_map(ns)
            elif ns.kind == "workflow":
                self._start_subworkflow(ns)
            elif ns.kind == "branch":
                self._start_branch(ns)
            else:  # pragma: no cover - the compiler rejects other kinds
                raise BindingError(f"unknown node kind {ns.kind}")
        except BindingError as exc:
            self._fail(ns, _system_error("BindingError", str(exc)))

    def _enqueue(self, ns: NodeState) -> None:
        assert ns.inputs is not None
        ns.inputs_uri = self._put_map(ns.full_id, "inputs.pb", ns.inputs)
        ns.phase = QUEUED
        self._record(ns)
        self.runnable.append(ns)

    # -- caching -----------------------------------------------------------------------

    def _cache_owner(self, ns: NodeState) -> str:
        return _caching.cache_owner(self, ns)

    def _cache_lookup(self, ns: NodeState) -> bool:
        return _caching.cache_lookup(self, ns)

    def _key_of(self, ns: NodeState) -> str:
        return _caching.key_of(self, ns)

    def _cache_write(self, ns: NodeState) -> None:
        return _caching.cache_write(self, ns)

    def _cache_release(self, ns: NodeState) -> None:
        return _caching.cache_release(self, ns)

    def _start_map(self, ns: NodeState) -> None:
        return _composite.start_map(self, ns)

    def _finish_map(self, ns: NodeState) -> None:
        return _composite.finish_map(self, ns)

    def _complete_composite(self, ns: NodeState, out: types_pb2.LiteralMap) -> None:
        return _composite.complete_composite(self, ns, out)

    def _start_subworkflow(self, ns: NodeState) -> None:
        return _composite.start_subworkflow(self, ns)

    def _start_branch(self, ns: NodeState) -> None:
        return _composite.start_branch(self, ns)

    def _dispatch(self) -> None:
        if self.pools is not None:
            self._start_granted(self.pools.poll())
        while self.runnable and self._in_flight() < self.parallelism and self.failing is None:
            ns = self.runnable.popleft()
            if ns.phase in TERMINAL:
                continue
            parent = ns.parent
            if parent is not None and parent.kind == "map":
                if parent.phase in TERMINAL:
                    continue
                limit = parent.node.map.concurrency
                if limit and parent.map_running >= limit:
                    parent.map_waiting.append(ns)
                    continue
                parent.map_running += 1
            if self.pools is not None and not self._acquire_pools(ns):
                continue
            self._start_attempt(ns)

    def _in_flight(self) -> int:
        """Attempts running or waiting for their pools: both count against parallelism, so
        one loop turn asks the pools for at most `parallelism` grants and stays short (a
        turn that took longer than a lease TTL would let granted leases expire unrenewed)."""
        waiting = len(self.pools.waiting) if self.pools is not None else 0
        return len(self.running) + waiting

    def _acquire_pools(self, ns: NodeState) -> bool:
        return _attempts.acquire_pools(self, ns)

    def _lose_lease(self, ns: NodeState) -> None:
        return _attempts.lose_lease(self, ns)

    def _start_granted(self, nodes: list[NodeState]) -> None:
        for ns in nodes:
            if ns.phase == QUEUED and self.failing is None:
                self._start_attempt(ns)

    def _start_attempt(self, ns: NodeState) -> None:
        return _attempts.start_attempt(self, ns)

    def _attempt_over(self, ns: NodeState) -> None:
        return _attempts.attempt_over(self, ns)

    def _attempt_ended(self, ns: NodeState, status: AttemptStatus) -> None:
        return _attempts.attempt_ended(self, ns, status)

    def _attempt_failed(
        self,
        ns: NodeState,
        err: execution_pb2.ExecutionError,
        *,
        phase: str = FAILED,
        log_links: list[LogLink] | None = None,
    ) -> None:
        return _attempts.attempt_failed(self, ns, err, phase=phase, log_links=log_links)

    def _fail(
        self, ns: NodeState, err: execution_pb2.ExecutionError, *, phase: str = FAILED
    ) -> None:
        if ns.phase in TERMINAL:
            return
        ns.phase = phase
        ns.finished_at = time.time()
        ns.error = error_dict(err, ns.full_id)
        self._cache_release(ns)
        self._record(ns, f"{err.code}: {err.message}"[:500])
        log.info("node failed", node_id=ns.full_id, code=err.code, error=err.message)
        parent = ns.parent or ns.scope.owner
        if parent is not None and parent.phase not in TERMINAL:
            what = f"item {ns.item_index}" if ns.kind == "map_item" else f"node {ns.full_id}"
            wrapped = execution_pb2.ExecutionError()
            wrapped.CopyFrom(err)
            wrapped.node_id = err.node_id or ns.full_id
            wrapped.message = f"{what} ({ns.name}) failed: {err.message}"
            self._fail(parent, wrapped)
            return
        if parent is None and self.failing is None:
            self.failing = error_dict(err, err.node_id or ns.full_id)
            self._stop_pending(f"not run: node {ns.full_id} ({ns.name}) failed")

    def _stop_pending(self, message: str, phase: str = SKIPPED) -> None:
        """Mark every node that has not started (queued, waiting to retry) as not run."""
        for ns in list(self.active.values()):
            if ns.phase in (QUEUED, RETRYING) or (
                ns.kind in ("map", "workflow", "branch")
                and ns.phase == RUNNING
                and not self._has_running_child(ns)
            ):
                ns.phase = phase if ns.phase == QUEUED else ABORTED
                ns.finished_at = time.time()
                self._record(ns, message)
        self.runnable.clear()

    def _has_running_child(self, ns: NodeState) -> bool:
        prefix = ns.full_id
        return any(r.full_id.startswith(prefix) for r in self.running.values())

    def _succeeded(
        self,
        ns: NodeState,
        outputs: types_pb2.LiteralMap,
        *,
        record: bool = True,
        message: str = "",
    ) -> None:
        ns.outputs = outputs
        ns.phase = SUCCEEDED
        if record:
            ns.finished_at = time.time()
            ns.error = None
            if ns.cache_status == "miss":
                self._cache_write(ns)
            self._record(ns, message)
        parent = ns.parent
        if parent is not None:
            if parent.phase in TERMINAL:
                return
            if parent.kind == "map":
                parent.items_done += 1
                if parent.items_done == len(parent.items):
                    self._finish_map(parent)
            else:  # the chosen case of a branch
                self._complete_composite(parent, outputs)
            return
        scope = ns.scope
        scope.outputs[ns.node.id] = outputs
        scope.remaining -= 1
        if scope.remaining == 0:
            self._scope_done(scope)
            return
        for dep in ns.dependents:
            dep.deps.discard(ns.node.id)
            if not dep.deps and dep.phase == QUEUED and not dep.started_at:
                self._ready(dep)

    def _scope_done(self, scope: Scope) -> None:
        out = types_pb2.LiteralMap()
        declared = {o.name: o.type for o in scope.template.interface.outputs}
        try:
            for b in scope.template.outputs:
                lit = resolve(b.binding, scope.inputs, scope.outputs)
                target = declared.get(b.var)
                if target is not None and needs_coercion(target):
                    lit = coerce(lit, target)
                out.literals[b.var].CopyFrom(lit)
        except BindingError as exc:
            err = _system_error("BindingError", str(exc))
            if scope.owner is not None:
                self._fail(scope.owner, err)
            else:
                self.failing = error_dict(err)
            return
        if scope.owner is not None:
            self._complete_composite(scope.owner, out)
            return
        uri = self.literals.put(
            self._uri_root, "outputs.pb", out.SerializeToString(deterministic=True)
        )
        self.outcome = RunOutcome(SUCCEEDED, out, None)
        self.batch.update_execution(self.execution_id, outputs_uri=uri)

    # -- the loop ----------------------------------------------------------------------

    def _handle_timers(self) -> None:
        return _attempts.handle_timers(self)

    def _handle_wakeup(self, attempt_id: str) -> None:
        return _attempts.handle_wakeup(self, attempt_id)

    def _poll_backends(self) -> None:
        return _attempts.poll_backends(self)

    def _wait_timeout(self) -> float:
        timeout = self.heartbeat_seconds
        if self.timers:
            timeout = min(timeout, max(0.0, self.timers[0][0] - time.monotonic()))
        for backend in self._polled:
            assert backend.poll_interval is not None
            timeout = min(timeout, backend.poll_interval)
        return timeout

    def _finished(self) -> bool:
        if self.outcome is not None:
            return True
        return self.failing is not None and not self.running

    def run(self) -> RunOutcome:
        """Drive the execution to its end. KeyboardInterrupt aborts it (and re-raises)."""
        # another engine's pool grant to one of our waiters wakes the loop at once
        unsubscribe = self.pools.subscribe(lambda: self.wakeups.put("")) if self.pools else None
        try:
            return self._run()
        finally:
            if unsubscribe is not None:
                unsubscribe()

    def _run(self) -> RunOutcome:
        try:
            self._start_scope(self.root_scope)
            while not self._finished():
                self._drain_ready()
                if self._finished():
                    break
                if self.pool_granted:
                    granted = list(self.pool_granted)
                    self.pool_granted.clear()
                    self._start_granted(granted)
                self._dispatch()
                self._flush()
                if self._finished():
                    break
                waiting_for_pools = self.pools is not None and bool(self.pools.waiting)
                if not (
                    self.running
                    or self.runnable
                    or self.timers
                    or self.ready
                    or waiting_for_pools
                    or self.pool_granted
                ):
                    # Nothing can make progress: a bug; fail loudly rather than hang.
                    self.failing = error_dict(
                        _system_error(
                            "Stalled", "no node is running or ready but the workflow is not done"
                        )
                    )
                    break
                if self.pools is not None:
                    for lost in self.pools.renew():
                        self._lose_lease(lost)
                try:
                    wait = min(self._wait_timeout(), self.cancel_check_seconds)
                    pool_wait = self.pools.next_wait() if self.pools is not None else None
                    if pool_wait is not None:
                        wait = min(wait, pool_wait)
                    self._handle_wakeup(self.wakeups.get(timeout=wait))
                    while True:
                        self._handle_wakeup(self.wakeups.get_nowait())
                except queue.Empty:
                    pass
                self._handle_timers()
                if self._polled:
                    self._poll_backends()
        except KeyboardInterrupt:
            self.abort("interrupted (Ctrl-C or SIGTERM)")
            raise
        except CancelRequested as exc:
            self.abort(f"cancelled: {exc}")
            return self.outcome  # type: ignore[return-value]
        except EngineShutdown:
            for attempt_id, ns in list(self.running.items()):
                if ns.backend is not None:
                    ns.backend.cancel(attempt_id)
            if self.pools is not None:
                self.pools.release_everything()
            self._flush(force_heartbeat=True)
            raise
        except BaseException as exc:
            self.abort(f"engine error: {type(exc).__name__}: {exc}")
            raise
        if self.outcome is None:
            self.outcome = RunOutcome(FAILED, None, self.failing)
        if self.pools is not None:
            self.pools.release_everything()
        self._flush(force_heartbeat=True)
        self.literals.close_segment(self._uri_root)
        return self.outcome

    def abort(self, reason: str) -> None:
        """Cancel running attempts and record the execution's nodes as aborted."""
        for attempt_id, ns in list(self.running.items()):
            try:
                if ns.backend is not None:
                    ns.backend.cancel(attempt_id)
            except Exception:
                log.exception("cancel failed", node_id=ns.full_id)
            self._record_attempt(
                ns, ABORTED, {"kind": "system", "code": "Aborted", "message": reason}
            )
        self.running.clear()
        if self.pools is not None:
            try:
                self.pools.release_everything()
            except Exception:
                log.exception("could not release pool leases; they expire after their TTL")
        for ns in list(self.active.values()):
            ns.phase = ABORTED
            ns.finished_at = time.time()
            self._cache_release(ns)
            self._record(ns, reason)
        self.runnable.clear()
        self.outcome = RunOutcome(
            ABORTED, None, {"kind": "system", "code": "Aborted", "message": reason}
        )
        try:
            self._flush(force_heartbeat=True)
        except Exception:
            log.exception("could not record the abort")
