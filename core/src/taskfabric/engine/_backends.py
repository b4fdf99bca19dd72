"""The backend instances of an engine: which backend runs a task, for which project and on
which target of a multi-cluster backend, created on first use and closed with the engine."""

from __future__ import annotations

import hashlib
import json
import threading
from typing import Any

from taskfabric.config import BackendConfig, Config, validate_backend_options
from taskfabric.core.v1 import tasks_pb2, workflow_pb2
from taskfabric.engine._launching import not_isolated
from taskfabric.errors import TaskfabricError
from taskfabric.logs import get_logger
from taskfabric.plugin_api import BACKENDS_GROUP, Backend, BackendContext
from taskfabric.plugins import PluginError, Plugins

log = get_logger("taskfabric.engine")

_TARGET_KEYS = ("label", "weight", "name")


class BackendNotConfiguredError(TaskfabricError):
    """A task's type maps to no backend this engine can run."""


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


class Backends:
    """One instance per backend name, target and settings, shared by the engine's runs."""

    def __init__(self, config: Config, plugins: Plugins, context: BackendContext) -> None:
        self._config = config
        self._plugins = plugins
        self._context = context
        self._instances: dict[tuple[str, str], Backend[Any]] = {}
        # (backend name, project) -> its instance, for backends without targets (a launch
        # asks for each task's backend: no settings dumped to find it again)
        self._plain: dict[tuple[str, str], Backend[Any]] = {}
        # Executions on several threads of one engine ask at once (`ExecutionWorker`).
        self._lock = threading.Lock()

    def check(
        self,
        compiled: workflow_pb2.CompiledWorkflow,
        project: str,
        *,
        isolate_code: bool,
        pools: Any,
    ) -> None:
        """`Engine.check_backends`: every task's backend exists and is configured, isolates
        its code when `isolate_code`, and `pools` (`EnginePools`) can grant what it asks."""
        for t in compiled.tasks:
            try:
                backend = self.for_task(t, project)
            except PluginError as exc:
                raise BackendNotConfiguredError(f"task '{t.id.name}': {exc}") from exc
            if isolate_code:
                gaps = backend.isolation_gaps(t) if backend.isolated else ()
                if not backend.isolated or gaps:
                    raise not_isolated(t, backend, gaps)
            weights: dict[str, int] = {}
            requests: list[Any] = [*t.pools, *backend.pool_requests(t)]
            for req in requests:
                weights[req.pool] = weights.get(req.pool, 0) + max(1, req.weight)
            if weights:
                pools.validate(t.id.name, weights, project)

    def for_task(
        self,
        task: tasks_pb2.TaskTemplate,
        project: str = "",
        *,
        cluster: str = "",
        execution_id: str = "",
    ) -> Backend[Any]:
        """The backend instance that runs `task` for `project` (created on first use).

        The config's [task_types] name the backend of a task type, else the type's default.
        A backend with `targets` (several clusters) runs each execution on one target: those
        labelled `cluster` (all when no label is asked for), picked by weight,
        deterministically from the execution id.
        """
        config = self._config.for_project(project) if project else self._config
        task_type = self._plugins.task_type(task.type)  # an unknown type fails, mapped or not
        name = config.task_types.get(task.type) or task_type.default_backend
        return self.named(name, project, cluster=cluster, execution_id=execution_id)

    def named(
        self, name: str, project: str = "", *, cluster: str = "", execution_id: str = ""
    ) -> Backend[Any]:
        """The instance of backend `name` (``[backends.<name>]``) for `project`; with
        `targets`, the one of them that runs `execution_id` (see `for_task`)."""
        plain = self._plain.get((name, project))
        if plain is not None:  # no targets: the same instance whatever the execution
            return plain
        config = self._config.for_project(project) if project else self._config
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
        key = (instance, json.dumps(backend_cfg.model_dump(mode="json"), sort_keys=True))
        with self._lock:
            backend = self._instances.get(key)
            if backend is None:
                backend = self.create(name, config, instance=instance)
                self._instances[key] = backend
            if not targets:
                self._plain[(name, project)] = backend
        return backend

    def create(self, name: str, config: Config, *, instance: str = "") -> Backend[Any]:
        """A new instance of backend `name` of `config` (the caller closes it)."""
        driver = config.backend(name).driver
        try:
            cls = self._plugins.driver(BACKENDS_GROUP, driver)
        except PluginError as exc:
            raise BackendNotConfiguredError(f"backend '{name}': {exc}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise BackendNotConfiguredError(
                f"backend driver '{driver}' is {cls!r}, not a subclass of "
                "taskfabric.plugin_api.Backend: the plugin that provides it is broken"
            )
        settings = validate_backend_options(config, name, cls.settings_model)
        try:
            backend = cls(instance or name, settings, self._context)
        except ValueError as exc:
            # A backend refusing what it was given (settings that cannot work together, a
            # blob store it cannot use): the user's to fix, said as such, not a traceback.
            raise BackendNotConfiguredError(f"backend '{name}' (driver {driver}): {exc}") from exc
        log.debug("backend created", backend=instance or name, driver=driver)
        return backend

    def instances(self) -> list[Backend[Any]]:
        """The instances created so far."""
        return list(self._instances.values())

    def close(self) -> None:
        for backend in self._instances.values():
            backend.close()
        self._instances.clear()
        self._plain.clear()
