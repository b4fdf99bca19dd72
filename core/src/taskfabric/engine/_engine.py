"""The engine: launches, runs and resumes executions on the configured stores."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from taskfabric._version import __version__
from taskfabric.catalog import Catalog
from taskfabric.config import Config, load_config
from taskfabric.core.v1 import types_pb2, workflow_pb2
from taskfabric.engine._backends import Backends
from taskfabric.engine._handles import Reattach, end_unattached, take_over
from taskfabric.engine._launching import (
    CodeNotIsolatedError,
    ExecutionNameTakenError,
    code_of,
    code_path_of,
    convert_inputs,
    create_execution,
    load_tasks,
    not_a_workflow,
)
from taskfabric.engine._owners import new_execution_id, owner_is_dead, this_owner
from taskfabric.engine._pooling import EnginePools
from taskfabric.engine._results import ExecutionResult, error_text
from taskfabric.engine._runner import Runner
from taskfabric.engine._state import ABORTED, FAILED, QUEUED, RUNNING, SUCCEEDED
from taskfabric.engine._util import EngineShutdown
from taskfabric.errors import TaskfabricError, ValueTooLargeError
from taskfabric.logs import bind_contextvars, get_logger, unbind_contextvars
from taskfabric.metadata import (
    Batch,
    EventRecord,
    ExecutionRecord,
    MetadataStore,
)
from taskfabric.plugin_api import BackendContext, NodeEvent
from taskfabric.plugins import Plugins, get_plugins, open_blob_store
from taskfabric.sdk import WorkflowDefinition
from taskfabric.storage import BlobStore, PackStore
from taskfabric.types import TransformContext

log = get_logger("taskfabric.engine")


class ExecutionNotFoundError(TaskfabricError):
    pass


class ExecutionBusyError(TaskfabricError):
    """Another live engine process owns the execution."""


class Engine:
    """Runs workflows durably on a blob store and a metadata database.

    `Engine()` uses the config file found by `load_config()` (or the embedded defaults).

    With `isolate_code` (what a multi-tenant server's workers and API use) the engine never
    imports an execution's code: it runs the stored compiled workflow, and refuses any task
    whose backend does not isolate it (`Backend.isolated`) from this process's credentials
    and from other projects' data.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        store: BlobStore | None = None,
        metadata: MetadataStore | None = None,
        plugins: Plugins | None = None,
        isolate_code: bool = False,
    ) -> None:
        self.config = config or load_config()
        self.isolate_code = isolate_code
        self.value_limit: int | None = None  # the largest document read_literals reads
        root = self.config.data_root
        self.plugins = plugins or get_plugins()
        self.store = store or open_blob_store(self.config, self.plugins)
        self.metadata = metadata or MetadataStore(
            self.config.metadata_url, pool_size=self.config.metadata.pool_size
        )
        self.literals = PackStore(self.store)
        self.catalog = Catalog(self.metadata)
        self.work_root = root / "work"
        self.pools = EnginePools(self.config, self.metadata, self.work_root)
        self.backends = Backends(
            self.config,
            self.plugins,
            BackendContext(
                store=self.store,
                literals=self.literals,
                data_root=self.config.data_root,
                work_root=self.work_root,
                parallelism=self.config.engine.parallelism,
                core_version=__version__,
                task_type=self.plugins.task_type,
                take_tokens=self.pools.take_tokens,
                pushback=self.pools.pushback,
                set_pool_capacity=self.pools.set_capacity,
                max_output_bytes=self.config.engine.max_output_bytes,
            ),
        )

    def close(self) -> None:
        self.backends.close()
        self.pools.close()
        self.literals.close()
        self.catalog.close()
        self.metadata.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backends and pools ----------------------------------------------------------

    @property
    def pool_manager(self) -> Any:
        """The resource pools of the config (`[pools.*]`), or None when there are none."""
        return self.pools.manager

    def _cluster_of(self, rec: ExecutionRecord) -> str:
        """The execution's cluster label: from its launch, else its project's settings."""
        label = getattr(rec, "cluster", None)
        if label:
            return str(label)
        override = self.config.projects.get(rec.project)
        return (override.cluster or "") if override is not None else ""

    def check_backends(self, compiled: workflow_pb2.CompiledWorkflow, project: str = "") -> None:
        """Fail before running if a task's type or backend is missing or misconfigured, or it
        does not isolate the task's code when it must, or the task asks for a resource pool
        that does not exist or could never grant it."""
        self.backends.check(compiled, project, isolate_code=self.isolate_code, pools=self.pools)

    # -- launching -------------------------------------------------------------------

    def launch(
        self,
        wf: WorkflowDefinition[Any, Any],
        inputs: Mapping[str, Any],
        *,
        project: str | None = None,
        domain: str | None = None,
        name: str | None = None,
        code: dict[str, str] | None = None,
        on_event: Callable[[NodeEvent], None] | None = None,
        on_start: Callable[[str], None] | None = None,
        overwrite_cache: bool = False,
        cluster: str | None = None,
    ) -> ExecutionResult:
        """Compile `wf`, record a new execution and run it to its end.

        With `overwrite_cache`, cached tasks run again and replace their catalog entries.
        """
        if not isinstance(wf, WorkflowDefinition):
            raise TypeError(not_a_workflow(wf, "Engine.launch"))
        compiled = wf.compile()
        project = project or self.config.project.name
        domain = domain or self.config.project.domain
        self.check_backends(compiled, project)
        execution_id = new_execution_id()
        ctx = TransformContext(
            store=self.store,
            raw_prefix=self.store.uri("executions", execution_id, "raw", "inputs"),
            work_dir=self.work_root / execution_id,
        )
        literal_inputs = convert_inputs(wf, inputs, ctx)
        try:
            rec = create_execution(
                self.metadata,
                self.literals,
                compiled,
                literal_inputs,
                execution_id=execution_id,
                project=project,
                domain=domain,
                name=name or execution_id,
                code=code or code_of(wf),
                run_here=True,
                cluster=cluster,
            )
        except ExecutionNameTakenError as exc:
            raise TaskfabricError(
                f"{exc}: choose another --name (or leave it out for a generated one)"
            ) from None
        if on_start is not None:
            on_start(execution_id)
        return self._run(
            rec, compiled, literal_inputs, wf.tasks, {}, on_event, overwrite_cache=overwrite_cache
        )

    def enqueue(
        self,
        compiled: workflow_pb2.CompiledWorkflow,
        inputs: types_pb2.LiteralMap,
        *,
        project: str,
        domain: str,
        name: str,
        code: dict[str, str],
        **extra: Any,
    ) -> ExecutionRecord:
        """Record a QUEUED execution for a worker to run; idempotent by (project, domain,
        name): a second call with the same name returns the first execution (schedulers
        and clients retrying a launch rely on it). `extra` sets further execution columns
        (launch_plan, scheduled_at, cluster) where the schema has them."""
        existing = self.metadata.find_by_name(project, domain, name)
        if existing is not None:
            if existing.workflow_name != compiled.primary.id.name:
                raise TaskfabricError(
                    f"execution name '{name}' is taken in {project}/{domain} by an execution "
                    f"of {existing.workflow_name}: choose another name"
                )
            return existing
        rec, _ = self.enqueue_or_fetch(
            compiled, inputs, project=project, domain=domain, name=name, code=code, **extra
        )
        return rec

    def enqueue_or_fetch(
        self,
        compiled: workflow_pb2.CompiledWorkflow,
        inputs: types_pb2.LiteralMap,
        *,
        project: str,
        domain: str,
        name: str,
        code: dict[str, str],
        **extra: Any,
    ) -> tuple[ExecutionRecord, bool]:
        """Insert a QUEUED execution under `name`, or fetch the one that holds the name:
        `(record, True)` when this call made it, `(existing, False)` otherwise, whatever it
        asked for (the caller compares). One atomic step: the database's unique
        (project, domain, name) decides between concurrent callers."""
        self.check_backends(compiled, project)
        try:
            rec = create_execution(
                self.metadata,
                self.literals,
                compiled,
                inputs,
                execution_id=new_execution_id(),
                project=project,
                domain=domain,
                name=name,
                code=code,
                run_here=False,
                **extra,
            )
        except ExecutionNameTakenError:
            # Another caller took the name first: its execution is the one.
            found = self.metadata.find_by_name(project, domain, name)
            if found is None:
                raise
            return found, False
        self.literals.close_segment(self.store.uri("executions", rec.id))
        return rec, True

    def _run(
        self,
        rec: ExecutionRecord,
        compiled: workflow_pb2.CompiledWorkflow,
        inputs: types_pb2.LiteralMap,
        task_defs: Mapping[str, Any],
        prior: Mapping[str, Any],
        on_event: Callable[[NodeEvent], None] | None,
        *,
        overwrite_cache: bool = False,
        reattach: Mapping[str, Reattach] | None = None,
        claimed_at: float | None = None,
        code_path: tuple[str, ...] = (),
        stop: threading.Event | None = None,
        cancel_check_at_once: bool = True,
    ) -> ExecutionResult:
        bind_contextvars(execution_id=rec.id)
        log.debug("execution running", workflow=rec.workflow_name)
        hooks = self.plugins.hook if self.plugins.wants_events else None
        if hooks is not None:
            self._call_hook(
                hooks.taskfabric_execution_started,
                execution_id=rec.id,
                workflow=rec.workflow_name,
                project=rec.project,
                domain=rec.domain,
            )
        runner = Runner(
            claimed_at=claimed_at,
            execution_id=rec.id,
            compiled=compiled,
            inputs=inputs,
            task_defs=task_defs,
            backend_for=functools.partial(
                self.backends.for_task,
                project=rec.project,
                cluster=self._cluster_of(rec),
                execution_id=rec.id,
            ),
            store=self.store,
            metadata=self.metadata,
            parallelism=self.config.engine.parallelism,
            heartbeat_seconds=self.config.engine.heartbeat_seconds,
            commit_seconds=self.config.engine.commit_seconds,
            max_output_bytes=self.config.engine.max_output_bytes,
            prior_nodes=prior,
            on_event=on_event,
            literals=self.literals,
            catalog=self.catalog,
            pools=self.pools.gate(rec),
            overwrite_cache=overwrite_cache,
            hooks=hooks,
            project=rec.project,
            domain=rec.domain,
            reattach=reattach,
            code_path=code_path,
            stop=stop,
            # attempts left running to re-attach are ended (if not submitted again) before
            # the execution's end is recorded
            record_end=not reattach,
            cancel_check_at_once=cancel_check_at_once,
        )
        try:
            outcome = runner.run()
        except EngineShutdown:
            # Left RUNNING with no owner: any engine may claim and resume it at once.
            now = time.time()
            batch = Batch()
            batch.update_execution(rec.id, owner="", heartbeat_at=None)
            batch.event(
                EventRecord(
                    rec.id, "", 0, RUNNING, now, "engine stopped; the execution will be resumed"
                )
            )
            self.metadata.apply(batch)
            unbind_contextvars("execution_id")
            raise
        except BaseException:
            error = runner.outcome.error if runner.outcome else None
            self._finish(rec.id, ABORTED, error)
            if hooks is not None:
                self._call_hook(
                    hooks.taskfabric_execution_finished,
                    execution_id=rec.id,
                    phase=ABORTED,
                    error=error,
                )
            unbind_contextvars("execution_id")
            raise
        if reattach:
            self._unattached(rec, reattach)
        if not runner.end_recorded:
            self._finish(rec.id, outcome.phase, outcome.error)
        if hooks is not None:
            self._call_hook(
                hooks.taskfabric_execution_finished,
                execution_id=rec.id,
                phase=outcome.phase,
                error=outcome.error,
            )
        log.debug("execution ended", phase=outcome.phase)
        unbind_contextvars("execution_id")
        return ExecutionResult(rec.id, outcome.phase, outcome.outputs, outcome.error)

    def _unattached(self, rec: ExecutionRecord, reattach: Mapping[str, Reattach]) -> None:
        """Attempts left running that the run ended without submitting again: interrupted,
        and handed to their backends to stop (see `end_unattached`)."""
        named = functools.partial(self.backends.named, project=rec.project, execution_id=rec.id)
        end_unattached(
            self.metadata, rec.id, reattach, lambda name: named(name, cluster=self._cluster_of(rec))
        )

    @staticmethod
    def _call_hook(hook: Any, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin's failure is logged, never the engine's failure."""
        try:
            hook(**kwargs)
        except Exception:
            log.exception("a plugin's lifecycle hook failed", hook=hook.name)

    def _finish(self, execution_id: str, phase: str, error: dict[str, Any] | None) -> None:
        now = time.time()
        batch = Batch()
        batch.update_execution(
            execution_id, phase=phase, finished_at=now, error=error, owner="", heartbeat_at=now
        )
        self.literals.close_segment(self.store.uri("executions", execution_id))
        batch.event(
            EventRecord(execution_id, "", 0, phase, now, error_text(error) if error else "")
        )
        self.metadata.apply(batch)

    # -- resuming --------------------------------------------------------------------

    def request_cancel(self, ref: str, reason: str = "requested by a user") -> str:
        """Cancel an execution from any process: a queued one at once, a running one by
        asking its engine (which aborts it within about a second). Returns the phase."""
        rec = self.find_execution(ref)
        if rec.phase in (SUCCEEDED, FAILED, ABORTED):
            return rec.phase
        return self.metadata.request_cancel(rec.id, reason, now=time.time())

    def find_execution(self, ref: str) -> ExecutionRecord:
        """An execution by id, name or unambiguous id prefix."""
        rec = self.metadata.get_execution(ref)
        if rec is not None:
            return rec
        found = self.metadata.find_executions(ref)
        if len(found) == 1:
            return found[0]
        if not found:
            raise ExecutionNotFoundError(
                f"no execution '{ref}' in {self.config.metadata_url}: "
                "`taskfabric executions list` shows the recent ones"
            )
        ids = ", ".join(r.id for r in found)
        raise ExecutionNotFoundError(f"'{ref}' matches several executions: {ids}")

    def read_literals(self, uri: str) -> types_pb2.LiteralMap | None:
        """A stored literal map (inputs or outputs), or None when absent or unreadable; one
        over `value_limit` (set by a server) raises `ValueTooLargeError`, unread when the
        store can tell its size."""
        if not uri:
            return None
        limit, m = self.value_limit, types_pb2.LiteralMap()
        try:
            size = self.literals.size(uri) if limit is not None else None
            data = self.literals.get(uri) if size is None or size <= (limit or 0) else b""
        except Exception:
            return None
        size = len(data) if size is None else size
        if limit is not None and size > limit:
            raise ValueTooLargeError(uri, size, limit, "max_value_bytes")
        try:
            m.ParseFromString(data)
        except Exception:
            return None
        return m

    def load_compiled(self, rec: ExecutionRecord) -> workflow_pb2.CompiledWorkflow:
        compiled = workflow_pb2.CompiledWorkflow()
        compiled.ParseFromString(self.literals.get(rec.workflow_uri))
        return compiled

    def resume(
        self,
        ref: str,
        *,
        force: bool = False,
        on_event: Callable[[NodeEvent], None] | None = None,
        workflow: WorkflowDefinition[Any, Any] | None = None,
        runnable_only: bool = False,
        stop: threading.Event | None = None,
    ) -> ExecutionResult:
        """Continue an execution whose engine stopped (crash, kill, failure, abort).

        Nodes that succeeded keep their outputs and are not run again; every other node
        runs (again). Refused while another live process owns the execution. The workflow
        is loaded again from the code location recorded at launch, unless `workflow` is
        given (e.g. one defined inside a function). Setting `stop` (from another thread)
        leaves the execution to be resumed, as SIGTERM does: EngineShutdown is raised.

        `runnable_only` (a worker taking an execution from the queue): only a QUEUED or a
        RUNNING execution is taken; one that ended meanwhile (a queued execution cancelled
        before the worker claimed it) raises ExecutionBusyError and is left as it is.
        """
        rec = self.find_execution(ref)
        if rec.phase == SUCCEEDED:
            raise TaskfabricError(f"execution {rec.id} already succeeded; nothing to resume")
        if runnable_only and rec.phase not in (QUEUED, RUNNING):
            raise ExecutionBusyError(f"execution {rec.id} is {rec.phase}: nothing to run")
        queued = rec.phase == QUEUED
        compiled, task_defs, code_path, refused = self._prepare(rec, workflow)
        now = time.time()
        stale_before = now - 3 * self.config.engine.heartbeat_seconds
        dead = bool(rec.owner) and owner_is_dead(rec.owner)
        if not self.metadata.claim_execution(
            rec.id,
            this_owner(),
            now=now,
            stale_before=stale_before,
            force=force or dead,
            phase=rec.phase,
        ):
            current = self.metadata.get_execution(rec.id)
            if current is not None and current.phase != rec.phase:
                # e.g. a queued execution cancelled while this process loaded its code
                raise ExecutionBusyError(
                    f"execution {rec.id} turned {current.phase} while this process prepared "
                    f"to run it (it was {rec.phase}); it is left as it is"
                )
            age = now - (rec.heartbeat_at or now)
            raise ExecutionBusyError(
                f"execution {rec.id} is being run by {rec.owner} (last heartbeat {age:.0f}s "
                "ago); wait for it, or pass --force if that process is gone"
            )
        if refused is not None:
            error = {"kind": "system", "code": "CodeNotIsolated", "message": str(refused)}
            self._finish(rec.id, FAILED, error)
            raise refused
        return self._start_claimed(
            rec,
            compiled,
            task_defs,
            code_path,
            now,
            start="started" if queued else "resumed",
            fresh=False,
            on_event=on_event,
            stop=stop,
        )

    def run_claimed(
        self, rec: ExecutionRecord, *, fresh: bool, stop: threading.Event | None = None
    ) -> ExecutionResult:
        """Run an execution this process took from the queue (`MetadataStore.claim_queued`:
        RUNNING, owned by this process, its start recorded). A `fresh` one (no node rows:
        it never ran) skips the reads and the writes of a resume; one put back in the queue
        by a recover is resumed, its succeeded nodes kept. `stop` as for `resume`.

        Raises before the run begins (its documents unreadable, say) with the execution
        still claimed: the caller puts it back in the queue (`MetadataStore.unclaim`)."""
        claimed_at = rec.heartbeat_at if rec.heartbeat_at is not None else time.time()
        compiled, task_defs, code_path, refused = self._prepare(rec, None)
        if refused is not None:
            error = {"kind": "system", "code": "CodeNotIsolated", "message": str(refused)}
            self._finish(rec.id, FAILED, error)
            raise refused
        return self._start_claimed(
            rec, compiled, task_defs, code_path, claimed_at, start="", fresh=fresh, stop=stop
        )

    def _prepare(
        self, rec: ExecutionRecord, workflow: WorkflowDefinition[Any, Any] | None
    ) -> tuple[
        workflow_pb2.CompiledWorkflow,
        Mapping[str, Any],
        tuple[str, ...],
        CodeNotIsolatedError | None,
    ]:
        """An execution's compiled workflow, its tasks' code (none when code is isolated),
        its code path, and why its tasks may not run here (recorded once it is claimed)."""
        compiled = self.load_compiled(rec)
        bundles = self.work_root / "bundles"
        task_defs = (
            {} if self.isolate_code else load_tasks(rec, compiled, workflow, self.store, bundles)
        )
        code_path = code_path_of(rec.code, self.store, bundles)
        try:
            self.check_backends(compiled, rec.project)
        except CodeNotIsolatedError as exc:
            return compiled, task_defs, code_path, exc
        return compiled, task_defs, code_path, None

    def _start_claimed(
        self,
        rec: ExecutionRecord,
        compiled: workflow_pb2.CompiledWorkflow,
        task_defs: Mapping[str, Any],
        code_path: tuple[str, ...],
        now: float,
        *,
        start: str,
        fresh: bool,
        on_event: Callable[[NodeEvent], None] | None = None,
        stop: threading.Event | None,
    ) -> ExecutionResult:
        """Run an execution this process has claimed (at `now`): unless `fresh` (it never
        ran), void what its previous engine left (attempts still running, pool leases) and
        record its `start` ('started', 'resumed'; '' when the claim recorded it)."""
        inputs = types_pb2.LiteralMap()
        inputs.ParseFromString(self.literals.get(rec.inputs_uri))
        prior: Mapping[str, Any] = {}
        reattach: Mapping[str, Reattach] = {}
        if not fresh:
            # Leases and queue places of the engine that ran it before are void now.
            self.pools.release_execution(rec.id)
            prior, reattach = take_over(self.metadata, rec.id, now, start, this_owner())
            log.info(
                "resuming execution",
                execution_id=rec.id,
                succeeded=sum(1 for n in prior.values() if n.phase == SUCCEEDED),
            )
        # A cancel requested since the claim counts; one `run_claimed` took just now first
        # looks for it an interval after the claim (see `Recorder`).
        return self._run(
            *(rec, compiled, inputs, task_defs, prior, on_event),
            reattach=reattach,
            claimed_at=now,
            code_path=code_path,
            stop=stop,
            cancel_check_at_once=bool(start),
        )
