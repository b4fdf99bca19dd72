"""`ThreadBackend`: the base of backends that run attempts in the engine's own process, on
worker threads (the built-in `local` backend, `spark-local`, `http`)."""

from __future__ import annotations

import contextvars
import functools
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from taskfabric.backends._execute import execute_task
from taskfabric.backends._paths import node_key
from taskfabric.logs import context_variables, get_logger
from taskfabric.plugin_api import (
    RUNNING,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendContext,
    BackendSettings,
    LogLink,
    TaskAttempt,
)
from taskfabric.tasklogs import LIVE_LOG_NAME, LOG_LINK_NAME, capture_in_context, keep_log

if TYPE_CHECKING:
    from taskfabric.tasklogs import _Capture

log = get_logger("taskfabric.backends")

SettingsT = TypeVar("SettingsT", bound=BackendSettings)

#: Python 3.11's `Path._make_child_relpath(part)`: the child `path / part` of a part known to
#: be one plain name, made without parsing it (what `iterdir` uses). There `/` parses its
#: operand, a tenth of a no-op attempt's cost on this thread; from 3.12 on it parses
#: lazily, and is the cheaper one. Else None.
_child: Callable[[Path, str], Path] | None = (
    getattr(Path, "_make_child_relpath", None) if sys.version_info < (3, 12) else None
)

#: The ids bound to the log lines of an attempt's context (structlog's context variables).
_LOG_IDS = ("execution_id", "node_id", "attempt")


class _CancelEvent(threading.Event):
    """A `threading.Event` made for each attempt (`TaskCall.cancelled`) whose condition is
    made the first time the event is set, cleared or waited on: most attempts end without
    any of these (a `python` task never looks at it), and an `Event`'s condition and lock
    cost more than the rest of it. The condition is on an `RLock`, as
    `threading.Condition()`'s own default (a plain `Lock`'s methods make `Condition` raise
    and catch three `AttributeError`s)."""

    def __init__(self) -> None:  # (not super().__init__: that builds the condition now)
        self._flag = False

    @property  # (an attribute of Event's, made on first use here)
    def _cond(self) -> threading.Condition:
        cond: threading.Condition | None = self.__dict__.get("_made_cond")
        if cond is None:
            with _making_cond:  # two threads at once (a set and a wait) make one
                cond = self.__dict__.get("_made_cond")
                if cond is None:
                    cond = self.__dict__["_made_cond"] = threading.Condition(threading.RLock())
        return cond


_making_cond = threading.Lock()


class ThreadBackend(Backend[SettingsT]):
    """Runs each attempt in one of the engine process's daemon worker threads.

    Up to `workers` threads (the settings' `workers` key when they have one, else the
    engine's parallelism) take attempts from one queue. Each calls `run_attempt`, which
    converts the inputs, runs the task through its task type and puts the outputs in the
    engine's pack store before the attempt is reported SUCCEEDED; the backend then calls
    `attempt.notify`. Submitting an attempt_id twice runs it once.

    A packed outputs record is deferred (`PackStore.put(defer=True)`): the engine's loop
    writes it with its own documents, in one `write(2)`, before the commit that records the
    success (`Documents.flush`), so a worker makes no system call per attempt and holds the
    pack's lock to append to a buffer (written at once only past 1 MiB). What a `kill -9`
    can cost is unchanged: the engine process is the one that would lose the record, and
    with it the uncommitted success that names it.

    A thread cannot be killed: cancelling or timing out an attempt that has started makes
    the engine stop waiting for it and discard its result, and sets the `cancelled` event the
    task type receives (`TaskCall.cancelled`), but Python code runs on to its end. Backends
    whose work must be stopped hard build on `ProcessBackend` instead.

    Subclasses set `driver` and `settings_model`, and usually override `run_attempt` only.
    """

    poll_interval: ClassVar[float | None] = None

    def __init__(self, name: str, settings: SettingsT, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        workers = getattr(settings, "workers", None)
        self.workers = max(1, workers if isinstance(workers, int) else context.parallelism)
        self._queue: queue.SimpleQueue[TaskAttempt | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._results: dict[str, AttemptStatus] = {}
        self._submitted: set[str] = set()
        self._cancelled: set[str] = set()
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        # attempts given to the queue and not yet taken by a thread, and threads waiting for
        # one (both under _lock): a thread is started only when none would take the attempt
        self._queued = 0
        self._idle = 0
        self._execution_uris: dict[str, str] = {}
        self._work_roots: dict[str, Path] = {}

    def submit(self, attempt: TaskAttempt) -> None:
        with self._lock:
            if attempt.attempt_id in self._submitted:
                return
            self._submitted.add(attempt.attempt_id)
            self._queued += 1
            # Starting a thread costs more than a task does (a chain of quick tasks never
            # needs a second one): only when every thread is busy.
            if self._queued > self._idle and len(self._threads) < self.workers:
                t = threading.Thread(
                    target=self._work,
                    name=f"taskfabric-{self.name}-{len(self._threads)}",
                    daemon=True,
                )
                self._threads.append(t)
                t.start()
        self._queue.put(attempt)

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        """Run one attempt in the calling worker thread and return how it ended.

        The extension point of backends built on this one: override it to prepare the
        thread around the task (a session, a context variable) and call
        `super().run_attempt(attempt)`, which converts the inputs, runs the task through its
        task type and puts the outputs in the pack store (deferred: written by the engine's
        next flush, before any commit that records them; a `get` of the URI writes them at
        once). The task runs in a copy of the thread's context (`contextvars`): what an
        override binds before calling this is seen by the task, and what is bound in it (the
        attempt's ids on log lines, its output capture, what the task binds) ends with the
        attempt. An exception it raises fails the attempt with a retryable system error."""
        if attempt.task_definition is None:
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    "TaskNotLoaded",
                    f"no Python task is loaded for {attempt.task.id.name}",
                    kind="system",
                    retryable=False,
                ),
            )
        # Its ids, its capture and its pool binding are set in the copy, with no token to
        # reset: one `run` instead of three context managers entered and left.
        status, capture = contextvars.copy_context().run(self._run_in_context, attempt)
        # (kept out of the copy: a warning of keep_log's own must not go to the capture)
        if capture.wrote:  # a task that printed nothing has no log file to keep
            uri = keep_log(
                self.context.store,
                attempt.execution_id,
                attempt.node_id,
                attempt.attempt,
                capture.path,
            )
            if uri is not None:
                status.log_links.append(LogLink(LOG_LINK_NAME, uri))
        return status

    def _run_in_context(self, attempt: TaskAttempt) -> tuple[AttemptStatus, _Capture]:
        ctx = self.context
        execution_id = attempt.execution_id
        prefix = self._execution_uri(execution_id)
        name = attempt.outputs_uri[len(prefix) + 1 :]
        work_dir = self._work_dir(attempt)
        # Log lines of the task (and of taskfabric on its behalf) carry its ids; what the
        # task prints goes to its attempt's log (tasklogs), not to this process's stdout.
        execution_var, node_var, attempt_var = context_variables(_LOG_IDS)
        execution_var.set(execution_id)
        node_var.set(attempt.node_id)
        attempt_var.set(attempt.attempt)
        capture = capture_in_context(work_dir, name=LIVE_LOG_NAME)
        try:
            status = execute_task(
                attempt.task_definition,
                attempt.task,
                ctx.task_type(attempt.task.type),
                attempt.inputs,
                store=ctx.store,
                raw_prefix=attempt.raw_prefix,
                work_dir=work_dir,
                # deferred: the loop writes it, before the commit that names it
                write_outputs=functools.partial(ctx.literals.put, prefix, name, defer=True),
                attempt_id=attempt.attempt_id,
                cancelled=self._events.setdefault(attempt.attempt_id, _CancelEvent()),
                attempt_context=True,
            )
        finally:
            capture.end()
        return status, capture

    def _execution_uri(self, execution_id: str) -> str:
        """The blob store URI of the execution's documents (kept: a map's items ask for it
        again and again, and the store builds it through pathlib)."""
        uris = self._execution_uris
        uri = uris.get(execution_id)
        if uri is None:
            if len(uris) >= 64:  # a long-lived engine runs many executions: keep a few
                uris.clear()
            uri = uris[execution_id] = self.context.store.uri("executions", execution_id)
        return uri

    def _work_dir(self, attempt: TaskAttempt) -> Path:
        """`attempt_work_dir`, from the execution's folder kept (pathlib parses each part
        of a path it joins: a map's items join the execution's again and again)."""
        roots = self._work_roots
        root = roots.get(attempt.execution_id)
        if root is None:
            if len(roots) >= 64:  # a long-lived engine runs many executions: keep a few
                roots.clear()
            root = roots[attempt.execution_id] = self.context.work_root / attempt.execution_id
        key = f"{node_key(attempt.node_id)}/{attempt.attempt}"
        if _child is None or "." in key or "//" in key:
            return root / key
        for part in key.split("/"):  # each part a single name: no parsing
            root = _child(root, part)
        return root

    def _work(self) -> None:
        # The thread counts itself idle before it reports an attempt's end, and reports it
        # as the last thing before it waits for the next: the attempt the loop submits when
        # it hears of that end always finds this thread idle (a chain runs on one thread;
        # counted after the report, a quick loop could start a second one).
        with self._lock:
            self._idle += 1
        while True:
            attempt = self._queue.get()
            with self._lock:
                self._idle -= 1
                if attempt is not None:
                    self._queued -= 1
            if attempt is None:
                return
            if attempt.attempt_id in self._cancelled:
                with self._lock:
                    self._idle += 1
                continue
            try:
                status = self.run_attempt(attempt)
            except BaseException as exc:  # a bug: report it, keep the worker alive
                # (anything that ended this thread would leave its attempt waiting forever)
                log.exception(
                    "backend failed to run an attempt",
                    backend=self.name,
                    attempt_id=attempt.attempt_id,
                )
                status = AttemptStatus(
                    AttemptPhase.FAILED,
                    error=AttemptError(type(exc).__name__, str(exc), kind="system", retryable=True),
                )
            with self._lock:
                self._idle += 1
                # Cancelled, or released by the engine while the thread ran on: drop it.
                if (
                    attempt.attempt_id in self._cancelled
                    or attempt.attempt_id not in self._submitted
                ):
                    self._cancelled.discard(attempt.attempt_id)
                    continue
                self._results[attempt.attempt_id] = status
            attempt.notify(attempt.attempt_id)

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            return self._results.get(attempt_id, RUNNING)

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            self._cancelled.add(attempt_id)
            self._results.pop(attempt_id, None)
            event = self._events.get(attempt_id)
        if event is not None:
            event.set()  # task types that can stop their work watch this

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._results.pop(attempt_id, None)
            self._events.pop(attempt_id, None)
            self._submitted.discard(attempt_id)
            self._cancelled.discard(attempt_id)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        self._threads.clear()
