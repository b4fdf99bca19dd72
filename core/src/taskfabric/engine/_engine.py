"""The engine: launches, runs and resumes executions on the configured stores."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import exc as sa_exc

from taskfabric._version import __version__
from taskfabric.catalog import Catalog
from taskfabric.config import BackendConfig, Config, load_config, validate_backend_options
from taskfabric.core.v1 import tasks_pb2, types_pb2, workflow_pb2
from taskfabric.engine._handles import INTERRUPTED, Reattach
from taskfabric.engine._holds import HoldService
from taskfabric.engine._loader import load_code
from taskfabric.engine._pools import PoolGate
from taskfabric.engine._runner import Runner
from taskfabric.engine._state import ABORTED, FAILED, QUEUED, RUNNING, SUCCEEDED
from taskfabric.engine._util import EngineShutdown
from taskfabric.errors import ExecutionFailedError, TaskfabricError
from taskfabric.logs import get_logger
from taskfabric.metadata import Batch, EventRecord, ExecutionRecord, MetadataStore
from taskfabric.plugin_api import BACKENDS_GROUP, Backend, BackendContext, NodeEvent
from taskfabric.plugins import PluginError, Plugins, get_plugins
from taskfabric.sdk import TaskDefinition, WorkflowDefinition
from taskfabric.storage import BlobStore, LocalBlobStore, PackStore
from taskfabric.types import TransformContext, default_engine, type_str

log = get_logger("taskfabric.engine")


class BackendNotConfiguredError(TaskfabricError):
    """A task's type maps to no backend this engine can run."""


class ExecutionNotFoundError(TaskfabricError):
    pass


class ExecutionBusyError(TaskfabricError):
    """Another live engine process owns the execution."""


@dataclass
class ExecutionResult:
    execution_id: str
    phase: str
    outputs: types_pb2.LiteralMap | None
    error: dict[str, Any] | None

    @property
    def succeeded(self) -> bool:
        return self.phase == SUCCEEDED

    def python_outputs(
        self, wf: WorkflowDefinition[Any, Any], store: BlobStore, work_dir: Any = None
    ) -> Any:
        """The outputs as the workflow function would have returned them."""
        if self.outputs is None:
            raise ExecutionFailedError(self.execution_id, self.phase, _error_text(self.error))
        from pathlib import Path

        ctx = TransformContext(store=store, raw_prefix="", work_dir=Path(work_dir or "."))
        engine = default_engine()
        values = {
            name: engine.to_python(self.outputs.literals[name], out.py_type, ctx)
            for name, out in wf.interface.outputs.items()
        }
        return wf.interface.unpack_outputs(values)


def _error_text(error: dict[str, Any] | None) -> str:
    if not error:
        return "unknown error"
    node = f"node {error['node_id']}: " if error.get("node_id") else ""
    return f"{node}{error.get('code', '')}: {error.get('message', '')}"


_TARGET_KEYS = ("label", "weight", "name")


def _dag(template: workflow_pb2.WorkflowTemplate) -> bytes:
    """A workflow template without its source locations, for comparing DAGs."""
    copy = workflow_pb2.WorkflowTemplate()
    copy.CopyFrom(template)
    copy.ClearField("location")
    copy.ClearField("description")

    def strip(node: workflow_pb2.Node) -> None:
        node.ClearField("location")
        if node.WhichOneof("target") == "branch":
            for case in node.branch.cases:
                strip(case.then_node)
            if node.branch.HasField("else_node"):
                strip(node.branch.else_node)

    for node in copy.nodes:
        strip(node)
    return copy.SerializeToString(deterministic=True)


def pick_target(backend: str, targets: Any, cluster: str, execution_id: str) -> dict[str, Any]:
    """The target of a multi-cluster backend that runs an execution.

    Targets labelled `cluster` (every target when `cluster` is empty) are candidates; one is
    picked with probability proportional to its `weight`, by a hash of the execution id, so
    an execution always lands on the same target (also when it is resumed elsewhere).
    """
    if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
        raise BackendNotConfiguredError(
            f"backend '{backend}': `targets` must be a list of tables, e.g. "
            '[{label = "eu", weight = 2, ...}, {label = "us", ...}]'
        )
    candidates = [t for t in targets if not cluster or t.get("label") == cluster]
    if not candidates:
        labels = ", ".join(sorted({str(t.get("label")) for t in targets}))
        raise BackendNotConfiguredError(
            f"backend '{backend}' has no target labelled '{cluster}'; its targets: {labels}"
        )
    weights = [float(t.get("weight", 1.0)) for t in candidates]
    if any(w <= 0 for w in weights):
        raise BackendNotConfiguredError(f"backend '{backend}': target weights must be > 0")
    point = int(hashlib.sha256(execution_id.encode()).hexdigest()[:12], 16) / float(16**12)
    point *= sum(weights)
    for target, weight in zip(candidates, weights, strict=True):
        if point < weight:
            return dict(target)
        point -= weight
    return dict(candidates[-1])


def new_execution_id() -> str:
    return secrets.token_hex(6)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process that nobody has reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class Engine:
    """Runs workflows durably on a blob store and a metadata database.

    `Engine()` uses the config file found by `load_config()` (or the embedded defaults).
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        store: BlobStore | None = None,
        metadata: MetadataStore | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.config = config or load_config()
        root = self.config.data_root
        self.store = store or LocalBlobStore(root / "blobs", durable=self.config.storage.durable)
        self.metadata = metadata or MetadataStore(self.config.metadata_url)
        self.literals = PackStore(self.store)
        self.catalog = Catalog(self.metadata.engine)
        self.work_root = root / "work"
        self.plugins = plugins or get_plugins()
        self._pool_manager: Any = None
        self._holds: HoldService | None = None
        self._backends: dict[tuple[str, str], Backend[Any]] = {}

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        if self._holds is not None:
            self._holds.close()
        if self._pool_manager is not None:
            self._pool_manager.close()
        self.literals.close()
        self.catalog.close()
        self.metadata.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- backends --------------------------------------------------------------------

    def _backend_name(self, task: tasks_pb2.TaskTemplate, config: Config) -> str:
        """The backend that runs `task`: the config's [task_types], else the type's default."""
        task_type = self.plugins.task_type(task.type)
        return config.task_types.get(task.type) or task_type.default_backend

    def backend_for(
        self,
        task: tasks_pb2.TaskTemplate,
        project: str = "",
        *,
        cluster: str = "",
        execution_id: str = "",
    ) -> Backend[Any]:
        """The backend instance that runs `task` for `project` (created on first use).

        A backend with `targets` (several clusters) runs each execution on one target: those
        labelled `cluster` (all when no label is asked for), picked by weight,
        deterministically from the execution id.
        """
        config = self.config.for_project(project) if project else self.config
        name = self._backend_name(task, config)
        backend_cfg = config.backend(name)
        instance = name
        targets = backend_cfg.options.get("targets")
        if targets:
            target = pick_target(name, targets, cluster, execution_id)
            instance = f"{name}@{target.get('name') or target.get('label') or '?'}"
            options = {k: v for k, v in backend_cfg.options.items() if k != "targets"}
            options.update({k: v for k, v in target.items() if k not in _TARGET_KEYS})
            backend_cfg = BackendConfig(driver=backend_cfg.driver, options=options)
            config = config.model_copy(update={"backends": {**config.backends, name: backend_cfg}})
            config._source = self.config.source
        key = (instance, json.dumps(backend_cfg.model_dump(mode="json"), sort_keys=True))
        backend = self._backends.get(key)
        if backend is None:
            backend = self._create_backend(name, config, instance=instance)
            self._backends[key] = backend
        return backend

    def _create_backend(self, name: str, config: Config, *, instance: str = "") -> Backend[Any]:
        driver = config.backend(name).driver
        try:
            cls = self.plugins.driver(BACKENDS_GROUP, driver)
        except PluginError as exc:
            raise BackendNotConfiguredError(f"backend '{name}': {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise BackendNotConfiguredError(
                f"backend driver '{driver}' is {cls!r}, not a subclass of "
                "taskfabric.plugin_api.Backend: the plugin that provides it is broken"
            )
        settings = validate_backend_options(config, name, cls.settings_model)
        context = BackendContext(
            store=self.store,
            literals=self.literals,
            data_root=self.config.data_root,
            work_root=self.work_root,
            parallelism=self.config.engine.parallelism,
            core_version=__version__,
            task_type=self.plugins.task_type,
            take_tokens=self._take_tokens,
            pushback=self._pushback,
        )
        log.debug("backend created", backend=instance or name, driver=driver)
        return cls(instance or name, settings, context)

    @property
    def pool_manager(self) -> Any:
        """The resource pools of the config (`[pools.*]`), or None when there are none."""
        if self._pool_manager is None and getattr(self.config, "pools", None):
            from taskfabric.pools import PoolManager, specs_from_config

            self._pool_manager = PoolManager(
                self.metadata.engine, specs_from_config(self.config), owner=_owner()
            )
        return self._pool_manager

    def _take_tokens(self, weights: Mapping[str, int]) -> float:
        manager = self.pool_manager
        return 0.0 if manager is None or not weights else float(manager.take_tokens(weights))

    def _pushback(self, pools: Mapping[str, float]) -> None:
        manager = self.pool_manager
        if manager is not None:
            for pool, seconds in sorted(pools.items()):
                manager.pushback(pool, seconds)

    def _make_hold_manager(self, owner: str) -> Any:
        from taskfabric.pools import PoolManager, specs_from_config

        return PoolManager(self.metadata.engine, specs_from_config(self.config), owner=owner)

    def _pool_gate(self, rec: ExecutionRecord) -> PoolGate | None:
        manager = self.pool_manager
        if manager is None:
            return None
        if self._holds is None:
            self._holds = HoldService(self._make_hold_manager, self.work_root)
        ttl = min(spec.lease_ttl for spec in manager.specs.values())
        return PoolGate(
            manager,
            execution_id=rec.id,
            project=rec.project,
            domain=rec.domain,
            renew_seconds=max(0.5, ttl / 3),
            holds=self._holds,
        )

    def _cluster_of(self, rec: ExecutionRecord) -> str:
        """The execution's cluster label: from its launch, else its project's settings."""
        label = getattr(rec, "cluster", None)
        if label:
            return str(label)
        override = self.config.projects.get(rec.project)
        return (override.cluster or "") if override is not None else ""

    def check_backends(self, compiled: workflow_pb2.CompiledWorkflow, project: str = "") -> None:
        """Fail before running if a task's type or backend is missing or misconfigured, or it
        asks for a resource pool that does not exist or could never grant it."""
        for t in compiled.tasks:
            try:
                backend = self.backend_for(t, project)
            except PluginError as exc:
                raise BackendNotConfiguredError(f"task '{t.id.name}': {exc}") from exc
            weights: dict[str, int] = {}
            requests: list[Any] = [*t.pools, *backend.pool_requests(t)]
            for req in requests:
                weights[req.pool] = weights.get(req.pool, 0) + max(1, req.weight)
            if not weights:
                continue
            manager = self.pool_manager
            if manager is None:
                names = ", ".join(sorted(weights))
                raise TaskfabricError(
                    f"task '{t.id.name}' asks for resource pool(s) {names}, but the config "
                    f"declares no pools: add a [pools.{sorted(weights)[0]}] table with its "
                    "slots (see docs/configuration.md)"
                )
            try:
                manager.validate_request(
                    weights,
                    project=project or self.config.project.name,
                    domain=self.config.project.domain,
                    who=f"task '{t.id.name}'",
                )
            except Exception as exc:
                raise TaskfabricError(str(exc)) from exc

    # -- launching -------------------------------------------------------------------

    def _convert_inputs(
        self, wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any], execution_id: str
    ) -> types_pb2.LiteralMap:
        engine = default_engine()
        ctx = TransformContext(
            store=self.store,
            raw_prefix=self.store.uri("executions", execution_id, "raw", "inputs"),
            work_dir=self.work_root / execution_id,
        )
        unknown = sorted(set(inputs) - set(wf.interface.inputs))
        if unknown:
            expected = ", ".join(
                f"{p.name}: {type_str(p.literal_type)}" for p in wf.interface.inputs.values()
            )
            raise TaskfabricError(
                f"workflow '{wf.short_name}' has no input named {', '.join(unknown)}; "
                f"its inputs are: {expected or 'none'}"
            )
        out = types_pb2.LiteralMap()
        for i, (name, param) in enumerate(wf.interface.inputs.items()):
            if name in inputs:
                try:
                    lit = engine.to_literal(inputs[name], param.py_type, ctx)
                except Exception as exc:
                    raise TaskfabricError(
                        f"workflow '{wf.short_name}', input '{name}': expected "
                        f"{type_str(param.literal_type)}: {exc}"
                    ) from exc
                out.literals[name].CopyFrom(lit)
            elif param.required:
                raise TaskfabricError(
                    f"workflow '{wf.short_name}' needs input '{name}' "
                    f"({type_str(param.literal_type)})"
                )
            else:
                out.literals[name].CopyFrom(wf.interface.proto.inputs[i].default)
        return out

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
            raise TypeError(_not_a_workflow(wf, "Engine.launch"))
        compiled = wf.compile()
        project = project or self.config.project.name
        domain = domain or self.config.project.domain
        self.check_backends(compiled, project)
        execution_id = new_execution_id()
        literal_inputs = self._convert_inputs(wf, inputs, execution_id)
        root = self.store.uri("executions", execution_id)
        # Small documents go to the execution's pack segment (one file for all of them).
        inputs_uri = self.literals.put(
            root, "inputs.pb", literal_inputs.SerializeToString(deterministic=True)
        )
        workflow_uri = self.literals.put(
            root, "workflow.pb", compiled.SerializeToString(deterministic=True)
        )
        now = time.time()
        owner = _owner()
        rec = ExecutionRecord(
            id=execution_id,
            project=project,
            domain=domain,
            name=name or execution_id,
            workflow_name=wf.name,
            phase=RUNNING,
            created_at=now,
            started_at=now,
            inputs_uri=inputs_uri,
            workflow_uri=workflow_uri,
            code=code or _code_of(wf),
            owner=owner,
            heartbeat_at=now,
            cluster=cluster,
        )
        try:
            self.metadata.create_execution(rec)
        except sa_exc.IntegrityError:
            raise TaskfabricError(
                f"execution name '{rec.name}' is already taken in {rec.project}/{rec.domain}: "
                "choose another --name (or leave it out for a generated one)"
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
        execution_id = new_execution_id()
        root = self.store.uri("executions", execution_id)
        inputs_uri = self.literals.put(
            root, "inputs.pb", inputs.SerializeToString(deterministic=True)
        )
        workflow_uri = self.literals.put(
            root, "workflow.pb", compiled.SerializeToString(deterministic=True)
        )
        rec = ExecutionRecord(
            id=execution_id,
            project=project,
            domain=domain,
            name=name,
            workflow_name=compiled.primary.id.name,
            workflow_version=compiled.primary.id.version,
            phase=QUEUED,
            created_at=time.time(),
            inputs_uri=inputs_uri,
            workflow_uri=workflow_uri,
            code=dict(code),
        )
        for key, value in extra.items():
            if not hasattr(rec, key):
                raise TypeError(f"executions have no column '{key}'")
            setattr(rec, key, value)
        try:
            self.metadata.create_execution(rec)
        except sa_exc.IntegrityError:
            # Another caller took the name first: its execution is the one.
            found = self.metadata.find_by_name(project, domain, name)
            if found is None:
                raise
            self.literals.close_segment(root)
            for uri in list(self.store.list(root)):  # the documents nobody will read
                self.store.delete(uri)
            return found, False
        self.literals.close_segment(root)
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
    ) -> ExecutionResult:
        structlog.contextvars.bind_contextvars(execution_id=rec.id)
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
            execution_id=rec.id,
            compiled=compiled,
            inputs=inputs,
            task_defs=task_defs,
            backend_for=functools.partial(
                self.backend_for,
                project=rec.project,
                cluster=self._cluster_of(rec),
                execution_id=rec.id,
            ),
            store=self.store,
            metadata=self.metadata,
            parallelism=self.config.engine.parallelism,
            heartbeat_seconds=self.config.engine.heartbeat_seconds,
            prior_nodes=prior,
            on_event=on_event,
            literals=self.literals,
            catalog=self.catalog,
            pools=self._pool_gate(rec),
            overwrite_cache=overwrite_cache,
            hooks=hooks,
            project=rec.project,
            domain=rec.domain,
            reattach=reattach,
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
            structlog.contextvars.unbind_contextvars("execution_id")
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
            structlog.contextvars.unbind_contextvars("execution_id")
            raise
        self._unattached(rec.id, runner.reattach)
        self._finish(rec.id, outcome.phase, outcome.error)
        if hooks is not None:
            self._call_hook(
                hooks.taskfabric_execution_finished,
                execution_id=rec.id,
                phase=outcome.phase,
                error=outcome.error,
            )
        log.debug("execution ended", phase=outcome.phase)
        structlog.contextvars.unbind_contextvars("execution_id")
        return ExecutionResult(rec.id, outcome.phase, outcome.outputs, outcome.error)

    @staticmethod
    def _call_hook(hook: Any, **kwargs: Any) -> None:
        """Call a lifecycle hook; a plugin's failure is logged, never the engine's failure."""
        try:
            hook(**kwargs)
        except Exception:
            log.exception("a plugin's lifecycle hook failed", hook=hook.name)

    def _unattached(self, execution_id: str, left: Mapping[str, Reattach]) -> None:
        """Attempts left running by a stopped engine process that the run ended without
        submitting again (a cache hit, a failure elsewhere first): recorded as interrupted."""
        if not left:
            return
        now = time.time()
        batch = Batch()
        for rec in self.metadata.attempts(execution_id):
            again = left.get(rec.node_id)
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
            batch.event(
                EventRecord(execution_id, rec.node_id, rec.attempt, FAILED, now, "interrupted")
            )
        self.metadata.apply(batch)

    def _finish(self, execution_id: str, phase: str, error: dict[str, Any] | None) -> None:
        now = time.time()
        batch = Batch()
        batch.update_execution(
            execution_id, phase=phase, finished_at=now, error=error, owner="", heartbeat_at=now
        )
        self.literals.close_segment(self.store.uri("executions", execution_id))
        batch.event(
            EventRecord(execution_id, "", 0, phase, now, _error_text(error) if error else "")
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
        """A stored literal map (inputs or outputs), or None when absent or unreadable."""
        if not uri:
            return None
        m = types_pb2.LiteralMap()
        try:
            m.ParseFromString(self.literals.get(uri))
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
    ) -> ExecutionResult:
        """Continue an execution whose engine stopped (crash, kill, failure, abort).

        Nodes that succeeded keep their outputs and are not run again; every other node
        runs (again). Refused while another live process owns the execution. The workflow
        is loaded again from the code location recorded at launch, unless `workflow` is
        given (e.g. one defined inside a function).
        """
        rec = self.find_execution(ref)
        if rec.phase == SUCCEEDED:
            raise TaskfabricError(f"execution {rec.id} already succeeded; nothing to resume")
        queued = rec.phase == QUEUED
        compiled = self.load_compiled(rec)
        if workflow is None and "<locals>" in rec.code.get("object", ""):
            raise TaskfabricError(
                f"workflow {rec.code['object']} was defined inside a function, so it cannot "
                "be loaded again; define it at module level, or pass it to Engine.resume()"
            )
        wf = (
            workflow
            if workflow is not None
            else load_code(rec.code, store=self.store, cache_root=self.work_root / "bundles")
        )
        if not isinstance(wf, WorkflowDefinition):
            raise TaskfabricError(f"{rec.code} is no longer a @workflow")
        # A registered workflow runs from its immutable code bundle: its DAG cannot differ.
        # Otherwise tasks' code may have changed (fixing a task and resuming is the point),
        # but not the DAG: its nodes, bindings and types (source lines do not count).
        if "bundle" not in rec.code and _dag(wf.compile().primary) != _dag(compiled.primary):
            raise TaskfabricError(
                f"the code of workflow '{wf.short_name}' changed since execution {rec.id} "
                "started (its DAG differs), so it cannot be resumed; launch a new execution"
            )
        self.check_backends(compiled, rec.project)
        now = time.time()
        stale_before = now - 3 * self.config.engine.heartbeat_seconds
        dead = bool(rec.owner) and _owner_is_dead(rec.owner)
        if not self.metadata.claim_execution(
            rec.id, _owner(), now=now, stale_before=stale_before, force=force or dead
        ):
            age = now - (rec.heartbeat_at or now)
            raise ExecutionBusyError(
                f"execution {rec.id} is being run by {rec.owner} (last heartbeat {age:.0f}s "
                "ago); wait for it, or pass --force if that process is gone"
            )
        inputs = types_pb2.LiteralMap()
        inputs.ParseFromString(self.literals.get(rec.inputs_uri))
        prior = {n.node_id: n for n in self.metadata.nodes(rec.id)}
        if self.pool_manager is not None:
            # Leases and queue places of the engine that ran it before are void now.
            self.pool_manager.release_execution(rec.id)
        batch = Batch()
        attempts = self.metadata.attempts(rec.id)
        # An attempt left running with a handle is submitted again (re-attach); only the
        # latest attempt of a node can be (attempts are ordered by node and number).
        reattach = {
            a.node_id: Reattach(a.attempt, a.handle)
            for a in attempts
            if a.phase == RUNNING and a.handle
        }
        for a in attempts:
            again = reattach.get(a.node_id)
            if again is not None and again.attempt == a.attempt:
                continue
            if a.phase == RUNNING:
                a.phase = FAILED
                a.finished_at = now
                a.error = {
                    "kind": "system",
                    "code": INTERRUPTED,
                    "message": "the engine process stopped during this attempt",
                }
                batch.attempt(a)
                batch.event(
                    EventRecord(
                        rec.id,
                        a.node_id,
                        a.attempt,
                        FAILED,
                        now,
                        "interrupted: the engine process stopped",
                    )
                )
        if queued:
            batch.update_execution(rec.id, phase=RUNNING, started_at=now)
            batch.event(EventRecord(rec.id, "", 0, RUNNING, now, f"started by {_owner()}"))
        else:
            batch.update_execution(rec.id, phase=RUNNING, finished_at=None, error=None)
            batch.event(EventRecord(rec.id, "", 0, RUNNING, now, f"resumed by {_owner()}"))
        self.metadata.apply(batch)
        log.info(
            "resuming execution",
            execution_id=rec.id,
            succeeded=sum(1 for n in prior.values() if n.phase == SUCCEEDED),
        )
        return self._run(rec, compiled, inputs, wf.tasks, prior, on_event, reattach=reattach)


def _not_a_workflow(obj: object, what: str) -> str:
    """Why `obj` cannot be launched, and what to launch instead."""
    if isinstance(obj, TaskDefinition):
        return (
            f"{what} runs a workflow, and {obj.name} is a task: call it from a @workflow "
            f"function (`return {obj.short_name}(...)`) and launch that workflow"
        )
    return f"{what} runs a @workflow, not {type(obj).__name__} {obj!r:.80}"


def _code_of(wf: WorkflowDefinition[Any, Any]) -> dict[str, str]:
    import sys

    module = sys.modules.get(wf.function.__module__)
    file = getattr(module, "__file__", None)
    if file:
        return {"file": os.path.abspath(file), "object": wf.function.__qualname__}
    return {"module": wf.function.__module__, "object": wf.function.__qualname__}


def run_workflow(
    wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any], config: Config | None = None
) -> Any:
    """Run `wf` on the configured engine and return its outputs as Python values."""
    with Engine(config) as engine:
        result = engine.launch(wf, inputs)
        if not result.succeeded:
            raise ExecutionFailedError(result.execution_id, result.phase, _error_text(result.error))
        return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)
