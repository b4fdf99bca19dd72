"""The execution loop: drives one execution's DAG to its end.

One thread (the caller's) owns all state. The Runner holds the DAG (scopes, nodes, what is
ready, how the execution ends) and turns the loop; its parts each own one job:

- `Attempts` (_attempts.py): the attempt lifecycle: queue, pools, submit, wake-ups and
  polls, the end of an attempt, retries and timeouts;
- `CacheStep` (_caching.py): catalog look-ups, reservations and entries;
- `Composites` (_composite.py): maps, sub-workflows and branches;
- `Recorder` (_recording.py): every transition, committed in groups (`commit_seconds`);
- `Documents` (_documents.py) and `Timers` (_timers.py).

Backends report attempt ends through `TaskAttempt.notify`, which wakes the loop; timers
drive retries, cache waits and timeouts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from taskfabric.catalog import Catalog
from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2, workflow_pb2
from taskfabric.engine._attempts import Attempts
from taskfabric.engine._bindings import BindingError, coerce, needs_coercion, planned, resolve
from taskfabric.engine._caching import CacheStep
from taskfabric.engine._composite import Composites
from taskfabric.engine._documents import Documents
from taskfabric.engine._handles import Reattach
from taskfabric.engine._pools import PoolGate
from taskfabric.engine._recording import Recorder
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
    PriorItems,
    Scope,
)
from taskfabric.engine._timers import Timers
from taskfabric.engine._util import (
    CancelRequested,
    EngineShutdown,
    RunOutcome,
    error_dict,
    node_kind,
    node_plans,
    system_error,
)
from taskfabric.logs import get_logger
from taskfabric.metadata import (
    MetadataStore,
    NodeRecord,
    database_out_of_reach,
    out_of_connections_hint,
)
from taskfabric.plugin_api import Backend, NodeEvent
from taskfabric.storage import BlobStore, PackStore

log = get_logger("taskfabric.engine")


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
        commit_seconds: float = 0.0,
        claimed_at: float | None = None,
        reattach: Mapping[str, Reattach] | None = None,
        code_path: tuple[str, ...] = (),
        stop: threading.Event | None = None,
        record_end: bool = False,
        cancel_check_at_once: bool = True,
        max_output_bytes: int | None = None,
    ) -> None:
        """With `record_end`, a run that reaches its end commits the execution's end (phase,
        error, owner released) in one transaction with its last transitions
        (`end_recorded` then says so); else the caller records it."""
        self._execution_id = execution_id
        self._record_end = record_end
        self.end_recorded = False
        # Set when the engine process stops: the loop leaves (EngineShutdown) within a turn.
        self._stop = stop
        # Attempts a stopped engine process left running with a handle, by node id: their
        # node's next attempt is that one, submitted again with the handle.
        self._reattach = dict(reattach or {})
        self._task_defs = task_defs
        self._prior = dict(prior_nodes or {})
        # A resume of a run that had started a map: what its items recorded, kept compactly
        # (`MetadataStore.prior_items` reads only what a resume uses of them).
        self._prior_items = PriorItems(
            metadata.prior_items(execution_id)
            if any(n.kind == "map" for n in self._prior.values())
            else ()
        )
        self._tasks = {t.id.name: t for t in compiled.tasks}
        self._input_types_of: dict[int, dict[str, types_pb2.LiteralType]] = {}
        self._heartbeat_seconds = heartbeat_seconds
        # nodes whose upstream nodes all succeeded, in the order they became ready
        self._ready: deque[NodeState] = deque()
        # maps whose items are not all started yet: items are made as the attempts have
        # room for them (MapItems); `_item_maps` keeps every map whose items are queued
        self._feeds: deque[NodeState] = deque()
        self._item_maps: list[NodeState] = []
        self._failing: dict[str, Any] | None = None
        self.outcome: RunOutcome | None = None
        self._root_scope = Scope("", compiled.primary, inputs)
        self._timers = Timers()
        self._documents = Documents(
            execution_id, store, literals or PackStore(store), max_output_bytes=max_output_bytes
        )
        self._recorder = Recorder(
            execution_id=execution_id,
            metadata=metadata,
            heartbeat_seconds=heartbeat_seconds,
            on_event=on_event,
            hooks=hooks,
            commit_seconds=commit_seconds,
            cancels_since=claimed_at,
            cancel_check_at_once=cancel_check_at_once,
            before_commit=self._documents.flush,
        )
        self._cache = CacheStep(
            catalog=catalog,
            execution_id=execution_id,
            project=project,
            domain=domain,
            overwrite=overwrite_cache,
            documents=self._documents,
            recorder=self._recorder,
        )
        self._attempts = Attempts(
            execution_id=execution_id,
            project=project,
            domain=domain,
            backend_for=backend_for,
            parallelism=parallelism,
            pools=pools,
            documents=self._documents,
            recorder=self._recorder,
            timers=self._timers,
            nodes=self,
            code_path=code_path,
        )
        self._composites = Composites(
            subworkflows={w.id.name: w for w in compiled.subworkflows},
            documents=self._documents,
            recorder=self._recorder,
            graph=self,
        )

    # -- building the graph ------------------------------------------------------------

    def start_scope(self, scope: Scope) -> None:
        """Create the nodes of a workflow instance and ready those without upstream nodes."""
        states = []
        for node, node_id, kind, task, deps in node_plans(scope.template):
            ns = self.make_node(scope.prefix + node_id, node, scope, kind=kind, task_name=task)
            ns.deps = set(deps)
            scope.nodes[node_id] = ns
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
            self.ready(ns)

    def make_node(
        self,
        full_id: str,
        node: workflow_pb2.Node,
        scope: Scope,
        parent: NodeState | None = None,
        *,
        kind: str = "",
        task_name: str = "",
    ) -> NodeState:
        """The state of `node` (`kind` and `task_name` as `node_plans` gives them, else
        read from the node; an item of a map runs its map's task)."""
        map_node = parent if parent is not None and parent.kind == "map" else None
        if not kind:
            kind, task_name = node_kind(node, map_node is not None)
        ns = NodeState(full_id, node, scope, kind, parent, scope_execution_id=self._execution_id)
        if map_node is not None:  # an item: runs its map's task
            ns.task, ns.task_def = map_node.task, map_node.task_def
            if self._prior_items:  # an item of a resumed map: its attempts go on
                found = self._prior_items.get(map_node.full_id, _item_index(map_node, full_id))
                ns.attempt = found[0] if found is not None else 0
        else:
            if task_name:
                ns.task = self._tasks[task_name]
                ns.task_def = self._task_defs.get(task_name)
            if self._prior and (prior := self._prior.get(full_id)) is not None:
                ns.attempt = prior.attempts
        if self._reattach and (again := self._reattach.pop(full_id, None)) is not None:
            ns.attempt, ns.handle = again.attempt - 1, again.handle  # the next start is it
        return ns

    def _input_types(self, task: tasks_pb2.TaskTemplate) -> dict[str, types_pb2.LiteralType]:
        """The task's input types that a value may need coercing to (unions, and lists and
        maps of them), by name: `resolve_inputs` leaves the others as bound. Made once per
        task (by id(): its template is one object in `_tasks`)."""
        types = self._input_types_of.get(id(task))
        if types is None:
            types = self._input_types_of[id(task)] = {
                i.name: i.type for i in task.interface.inputs if needs_coercion(i.type)
            }
        return types

    def resolve_inputs(
        self, ns: NodeState, input_types: Mapping[str, types_pb2.LiteralType]
    ) -> types_pb2.LiteralMap:
        """The node's inputs from its bindings, shaped for the types it declares."""
        scope = ns.scope
        found = planned(scope, ns.node.id) if not input_types and ns.parent is None else None
        if found is not None:  # a node of the scope's template, its bindings all planned
            return found
        out = types_pb2.LiteralMap()
        mapped = set(ns.node.map.mapped_inputs) if ns.kind == "map" else ()
        for b in ns.node.inputs:
            var = b.var
            lit = resolve(b.binding, scope.inputs, scope.outputs)
            target = input_types.get(var) if input_types else None
            if target is not None:
                if var in mapped:
                    target = types_pb2.LiteralType(list_type=target)
                if needs_coercion(target):
                    lit = coerce(lit, target)
            out.literals[var].CopyFrom(lit)
        return out

    # -- transitions -------------------------------------------------------------------

    @property
    def stopping(self) -> bool:  # failing: nothing new starts, running attempts finish
        return self._failing is not None

    def ready(self, ns: NodeState) -> None:
        """All of `ns`'s upstream nodes succeeded: queue it to start (a queue, not recursion:
        a long chain of nodes done at once, cache hits or recorded, grows no stack)."""
        self._ready.append(ns)

    def feed(self, ns: NodeState) -> None:
        """`ns` is a map whose items were queued: start them as room frees up."""
        self._feeds.append(ns)
        self._item_maps.append(ns)

    def _drain_ready(self, budget: int = 10_000) -> bool:
        """Start the ready nodes, and maps' items while there is room for them. Returns
        whether items are left that could start now: `budget` of them were made in this
        turn (items served from the cache or a record take no room), and this turn's
        transitions are committed before more are made."""
        ready, feeds = self._ready, self._feeds
        blocked = 0  # maps in a row that have no room for another item
        while True:
            while ready:
                self._start_node(ready.popleft())
            if not feeds or blocked >= len(feeds) or self._failing is not None:
                return False
            if budget <= 0:
                return True
            ns = feeds[0]
            if ns.phase != RUNNING:
                feeds.popleft()
                continue
            if not self._attempts.wants_items(ns):
                feeds.rotate(-1)
                blocked += 1
                continue
            item = self._composites.next_item(ns)
            if item is None:
                feeds.popleft()
                continue
            blocked = 0
            budget -= 1
            feeds.rotate(-1)
            self._start_node(item)

    def _start_node(self, ns: NodeState) -> None:
        """Start `ns` (or reuse its recorded or cached outputs)."""
        if self._failing is not None or ns.started_at is not None:
            return
        items = ns.parent.map_items if ns.parent is not None else None
        prior = None
        if items is not None:
            if self._prior_items:
                assert ns.parent is not None
                found = self._prior_items.get(ns.parent.full_id, ns.item_index)
                if found is not None and self._recorded(ns, found[1]):
                    return
        else:
            prior = self._prior.get(ns.full_id)
            if prior is not None and self._recorded(ns, prior.outputs_uri, prior):
                return
        # an item waits from when its map queued it; a node run again (its execution resumed)
        # records its QUEUED as an event (`Recorder.node`)
        ns.started_at = items.queued_at if items is not None else time.time()
        ns.recorded_before = prior is not None
        try:
            if ns.kind == "task":
                assert ns.task is not None
                ns.inputs = self.resolve_inputs(ns, self._input_types(ns.task))
                self._run_task(ns)
            elif ns.kind == "map_item":
                self._run_task(ns)
            elif ns.kind in ("map", "workflow", "branch"):
                self._composites.start(ns)
            else:  # pragma: no cover - the compiler rejects other kinds
                raise BindingError(f"unknown node kind {ns.kind}")
        except BindingError as exc:
            self.fail(ns, system_error("BindingError", str(exc)))

    def _recorded(self, ns: NodeState, outputs_uri: str, prior: NodeRecord | None = None) -> bool:
        """Serve `ns` from the outputs an earlier run of the execution recorded (a resume),
        when it has them and they can be read (`prior`: its row, a map item's is not read)."""
        if not outputs_uri or (prior is not None and prior.phase != SUCCEEDED):
            return False
        try:
            outputs = self._documents.load(outputs_uri)
        except Exception as exc:
            log.warning(
                "recorded outputs unreadable, running node again",
                node_id=ns.full_id,
                error=str(exc),
            )
            return False
        ns.outputs_uri = outputs_uri
        ns.phase = SUCCEEDED
        if prior is not None:
            ns.inputs_uri = prior.inputs_uri
            ns.started_at, ns.finished_at = prior.started_at, prior.finished_at
        self.succeeded(ns, outputs, record=False)
        return True

    def _run_task(self, ns: NodeState) -> None:
        """A task node or map item with its inputs: serve it from the cache, make it wait
        for another computation of its result, or queue its attempt."""
        found = self._cache.lookup(ns)
        if found.outputs is not None:
            self.succeeded(ns, found.outputs, message=ns.message)
        elif found.wait:
            self._timers.after(self._cache.poll_seconds, ns, self._cache_wait_over)
        else:
            assert ns.inputs is not None
            ns.inputs_uri = self._documents.put(ns.full_id, "inputs.pb", ns.inputs)
            if ns.kind != "map_item" or ns.phase != QUEUED:
                # (a map's items were recorded QUEUED with their map, in bulk)
                ns.phase = QUEUED
                self._recorder.node(ns)
            self._attempts.queue(ns)

    def _cache_wait_over(self, ns: NodeState) -> None:
        if ns.phase == QUEUED and self._failing is None:
            self._run_task(ns)

    def fail(
        self, ns: NodeState, err: execution_pb2.ExecutionError, *, phase: str = FAILED
    ) -> None:
        """The node failed for good: so does its parent, up to the execution, which then
        starts nothing new."""
        if ns.phase in TERMINAL:
            return
        ns.phase = phase
        ns.finished_at = time.time()
        ns.error = error_dict(err, ns.full_id)
        self._cache.release(ns)
        self._recorder.node(ns, f"{err.code}: {err.message}"[:500])
        log.info("node failed", node_id=ns.full_id, code=err.code, error=err.message)
        parent = ns.parent or ns.scope.owner
        if parent is not None and parent.phase not in TERMINAL:
            what = f"item {ns.item_index}" if ns.kind == "map_item" else f"node {ns.full_id}"
            wrapped = execution_pb2.ExecutionError()
            wrapped.CopyFrom(err)
            wrapped.node_id = err.node_id or ns.full_id
            wrapped.message = f"{what} ({ns.name}) failed: {err.message}"
            self.fail(parent, wrapped)
            return
        if parent is None and self._failing is None:
            self._failing = error_dict(err, err.node_id or ns.full_id)
            self._stop_pending(f"not run: node {ns.full_id} ({ns.name}) failed")

    def _stop_pending(self, message: str, phase: str = SKIPPED) -> None:
        """Mark every node that has not started (queued, waiting to retry) as not run."""
        for ns in self._recorder.active():
            if ns.phase in (QUEUED, RETRYING) or (
                ns.kind in ("map", "workflow", "branch")
                and ns.phase == RUNNING
                and not self._attempts.running_under(ns.full_id)
            ):
                ns.phase = phase if ns.phase == QUEUED else ABORTED
                ns.finished_at = time.time()
                self._recorder.node(ns, message)
        self._stop_items(phase, message)
        self._attempts.clear_queue()

    def _stop_items(self, phase: str, message: str) -> None:
        """Record the queued items of every map as `phase` (in bulk: those not made yet
        have no NodeState) and start no more of them."""
        self._feeds.clear()
        for ns in self._item_maps:
            if ns.map_items is not None:
                self._recorder.stop_items(ns, phase, message)
        self._item_maps.clear()

    def succeeded(
        self,
        ns: NodeState,
        outputs: types_pb2.LiteralMap,
        *,
        record: bool = True,
        message: str = "",
    ) -> None:
        """The node has its outputs: its parent or its dependents move on."""
        ns.outputs = outputs
        ns.phase = SUCCEEDED
        if record:
            ns.finished_at = time.time()
            ns.error = None
            if ns.cache_status == "miss":
                self._cache.write(ns)
            self._recorder.node(ns, message)
        parent = ns.parent
        if parent is not None:
            if parent.phase not in TERMINAL:
                self._composites.child_succeeded(parent, ns, outputs)
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
                self.ready(dep)

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
            err = system_error("BindingError", str(exc))
            if scope.owner is not None:
                self.fail(scope.owner, err)
            else:
                self._failing = error_dict(err)
            return
        if scope.owner is not None:
            self._composites.complete(scope.owner, out)
            return
        uri = self._documents.put_execution_outputs(out)
        self.outcome = RunOutcome(SUCCEEDED, out, None)
        self._recorder.execution(outputs_uri=uri)

    # -- the loop ----------------------------------------------------------------------

    def _finished(self) -> bool:
        if self.outcome is not None:
            return True
        return self._failing is not None and not self._attempts.has_running()

    def run(self) -> RunOutcome:
        """Drive the execution to its end. KeyboardInterrupt aborts it (and re-raises)."""
        unsubscribe = self._attempts.subscribe_to_pools()  # another engine's grant wakes it
        try:
            return self._run()
        finally:
            unsubscribe()
            self._cache.end_turn()
            self._root_scope.nodes.clear()  # (they and their scope refer to each other:
            self._root_scope.outputs.clear()  # freed now, not by a later collection)

    def _run(self) -> RunOutcome:
        attempts, recorder, timers = self._attempts, self._recorder, self._timers
        try:
            self.start_scope(self._root_scope)
            while not self._finished():
                more = self._drain_ready()
                self._cache.end_turn()
                if self._finished():
                    break
                attempts.dispatch()
                recorder.flush()
                if self._finished():
                    break
                if attempts.idle() and not timers and not self._ready and not self._feeds:
                    # Nothing can make progress: a bug; fail loudly rather than hang.
                    self._failing = error_dict(
                        system_error(
                            "Stalled", "no node is running or ready but the workflow is not done"
                        )
                    )
                    break
                attempts.renew_leases()
                wait = 0.0 if more else min(self._heartbeat_seconds, recorder.cancel_check_seconds)
                for due in (timers.next_in(), recorder.commit_due_in()):
                    if due is not None:
                        wait = min(wait, due)
                attempts.wait(wait)
                if self._stop is not None and self._stop.is_set():
                    raise EngineShutdown
                timers.fire_due()
                attempts.poll_backends()
        except KeyboardInterrupt:
            self.abort("interrupted (Ctrl-C or SIGTERM)")
            raise
        except CancelRequested as exc:
            self.abort(f"cancelled: {exc}")
            return self.outcome  # type: ignore[return-value]
        except EngineShutdown:
            attempts.stop()
            recorder.flush(force=True)
            raise
        except BaseException as exc:
            if database_out_of_reach(exc):
                # A passing outage of the metadata database (connections exhausted, a
                # restart) is no reason to lose the execution: stop as on SIGTERM, leaving
                # it to be resumed (by this process once it reaches the database again, or
                # by another once the lease lapses).
                log.warning(
                    "the metadata database is out of reach: the execution is left to be resumed",
                    error=f"{type(exc).__name__}: {exc}",
                    hint=out_of_connections_hint(exc),
                )
                attempts.stop()
                raise EngineShutdown from exc
            self.abort(f"engine error: {type(exc).__name__}: {exc}")
            raise
        if self.outcome is None:
            self.outcome = RunOutcome(FAILED, None, self._failing)
        attempts.release_pools()
        if self._record_end:
            recorder.execution_end(self.outcome.phase, self.outcome.error)
        recorder.flush(force=True)
        self.end_recorded = self._record_end
        self._documents.close()
        return self.outcome

    def abort(self, reason: str) -> None:
        """Cancel running attempts and record the execution's nodes as aborted."""
        self._attempts.abort(reason)
        for ns in self._recorder.active():
            ns.phase = ABORTED
            ns.finished_at = time.time()
            self._cache.release(ns)
            self._recorder.node(ns, reason)
        self._stop_items(ABORTED, reason)
        self.outcome = RunOutcome(
            ABORTED, None, {"kind": "system", "code": "Aborted", "message": reason}
        )
        try:
            self._recorder.flush(force=True)
        except Exception:
            log.exception("could not record the abort")


def _item_index(map_node: NodeState, full_id: str) -> int:
    """The index of the item `full_id` (`<map id>[<index>]`) of `map_node`."""
    return int(full_id[len(map_node.full_id) + 1 : -1])
