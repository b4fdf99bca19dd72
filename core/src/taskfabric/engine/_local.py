"""The built-in `local` backend: Python tasks in a pool of worker threads."""

from __future__ import annotations

import functools
import queue
import threading
from pathlib import Path

import structlog

from taskfabric.engine._backend import RUNNING, AttemptSpec, AttemptStatus, Backend
from taskfabric.engine._execute import execute_task
from taskfabric.logs import get_logger
from taskfabric.storage import BlobStore, PackStore

log = get_logger("taskfabric.local")


class LocalBackend(Backend):
    """Runs each attempt in one of `workers` daemon threads of this process.

    A thread cannot be killed: cancelling or timing out an attempt that has started makes
    the engine stop waiting for it and discard its result, but the function runs on to its
    end. Use the `subprocess` backend for tasks that must be stopped hard.
    """

    name = "local"
    poll_interval = None

    def __init__(
        self, store: BlobStore, work_root: Path, workers: int = 8, literals: PackStore | None = None
    ) -> None:
        self.store = store
        self.literals = literals or PackStore(store)
        self.work_root = work_root
        self.workers = max(1, workers)
        self._queue: queue.SimpleQueue[AttemptSpec | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._results: dict[str, AttemptStatus] = {}
        self._submitted: set[str] = set()
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, spec: AttemptSpec) -> None:
        with self._lock:
            if spec.attempt_id in self._submitted:
                return
            self._submitted.add(spec.attempt_id)
            if len(self._threads) < self.workers:
                t = threading.Thread(
                    target=self._work, name=f"taskfabric-local-{len(self._threads)}", daemon=True
                )
                self._threads.append(t)
                t.start()
        self._queue.put(spec)

    def _work(self) -> None:
        while True:
            spec = self._queue.get()
            if spec is None:
                return
            if spec.attempt_id in self._cancelled:
                continue
            if spec.task_definition is None:
                raise RuntimeError(f"no Python task loaded for {spec.task.id.name}")
            prefix = self.store.uri("executions", spec.execution_id)
            name = spec.outputs_uri[len(prefix) + 1 :]
            # Log lines of the task (and of taskfabric on its behalf) carry its ids.
            with structlog.contextvars.bound_contextvars(
                execution_id=spec.execution_id, node_id=spec.node_id, attempt=spec.attempt
            ):
                status = execute_task(
                    spec.task_definition,
                    spec.inputs,
                    store=self.store,
                    raw_prefix=spec.raw_prefix,
                    work_dir=self.work_root / spec.execution_id,
                    write_outputs=functools.partial(self.literals.put, prefix, name),
                )
            with self._lock:
                if spec.attempt_id in self._cancelled:
                    continue
                self._results[spec.attempt_id] = status
            spec.notify(spec.attempt_id)

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            return self._results.get(attempt_id, RUNNING)

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            self._cancelled.add(attempt_id)
            self._results.pop(attempt_id, None)

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)
            self._submitted.discard(attempt_id)
            self._cancelled.discard(attempt_id)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()
