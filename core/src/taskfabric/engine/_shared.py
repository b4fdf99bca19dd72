"""One engine per process for the documented `wf(...)` call (and `run_workflow`): the first
call opens it (the metadata database and its schema check, compiled statements, the blob
store, the backends' worker threads) and later calls with the same config and plugins reuse
all of it; another config replaces it, and it is closed at exit."""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from taskfabric.config import Config, load_config
from taskfabric.engine._engine import Engine
from taskfabric.engine._results import error_text
from taskfabric.errors import ExecutionFailedError
from taskfabric.logs import get_logger
from taskfabric.plugins import get_plugins
from taskfabric.sdk import WorkflowDefinition

log = get_logger("taskfabric.engine")


class SharedEngine:
    """The engine kept for this process."""

    def __init__(self) -> None:
        self._busy = threading.Lock()
        self._engine: Engine | None = None
        self._key = ""
        self._closed_at_exit = False

    @contextmanager
    def use(self, config: Config | None = None) -> Iterator[Engine]:
        """The process's engine for `config` (default: `load_config()`) and the current
        plugins, opened on first use.

        A call made while the shared engine runs another one (a `wf(...)` inside a task,
        another thread) gets an engine of its own for that call, closed after it."""
        config = config or load_config()
        if not self._busy.acquire(blocking=False):
            with Engine(config) as engine:
                yield engine
            return
        try:
            yield self._engine_for(config)
        finally:
            self._busy.release()

    def close(self) -> None:
        """Close the engine (at exit; a later call opens a new one)."""
        # At exit a daemon thread may still be inside a run: do not wait for it forever.
        locked = self._busy.acquire(timeout=5)
        try:
            engine, self._engine, self._key = self._engine, None, ""
            if engine is not None:
                engine.close()
        finally:
            if locked:
                self._busy.release()

    def _engine_for(self, config: Config) -> Engine:
        plugins = get_plugins()
        key = (
            json.dumps(
                [str(config.source), str(config.data_root), config.model_dump(mode="json")],
                sort_keys=True,
                default=str,
            )
            + f"/plugins {id(plugins)}"
        )
        if self._engine is not None and key == self._key:
            return self._engine
        if self._engine is not None:
            log.debug("config changed: the process's engine is replaced")
            self._engine.close()
            self._engine = None
        self._engine, self._key = Engine(config, plugins=plugins), key
        if not self._closed_at_exit:
            atexit.register(self.close)
            self._closed_at_exit = True
        return self._engine


shared_engine = SharedEngine()


def run_workflow(
    wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any], config: Config | None = None
) -> Any:
    """Run `wf` on the process's engine and return its outputs as Python values."""
    with shared_engine.use(config) as engine:
        result = engine.launch(wf, inputs)
        if not result.succeeded:
            raise ExecutionFailedError(result.execution_id, result.phase, error_text(result.error))
        return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)
