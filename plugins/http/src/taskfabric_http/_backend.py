"""The `http` backend: runs the `http` and `http-job` task types (and any other task type, in
worker threads, like the core's `local` backend).

For an HTTP attempt it knows what a task type cannot: the service's pools (`pool_requests`,
so the engine grants the attempt its pools before it starts), the blob store (for idempotency
keys that survive the engine) and the engine's pools (a throttled call reports its pushback
while the attempt runs on). Attempts run on the worker threads of the core's public
`ThreadBackend`, which converts inputs and outputs and records errors; this backend hands each
HTTP attempt a `Session`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import ClassVar

import httpx

from taskfabric.backends import ThreadBackend
from taskfabric.core.v1 import tasks_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptStatus,
    Backend,
    BackendContext,
    BackendSettings,
    CheckResult,
    PoolRequest,
    TaskAttempt,
)
from taskfabric_http._config import HttpJob, HttpRequest
from taskfabric_http._errors import HttpConfigError
from taskfabric_http._keys import KeyBook
from taskfabric_http._send import Caller, make_client
from taskfabric_http._settings import HttpSettings, ServiceConfig, resolve_service

__all__ = ["HTTP_TASK_TYPES", "HttpBackend", "Session", "session_of"]

log = get_logger("taskfabric.http")

HTTP_TASK_TYPES: dict[str, type[HttpRequest] | type[HttpJob]] = {
    "http": HttpRequest,
    "http-job": HttpJob,
}

_sessions: dict[str, Session] = {}
_sessions_lock = threading.Lock()


def session_of(attempt_id: str) -> Session | None:
    """The session the `http` backend opened for an attempt, if it runs the attempt."""
    with _sessions_lock:
        return _sessions.get(attempt_id)


class Session:
    """What an HTTP attempt gets from the backend that runs it."""

    def __init__(self, backend: HttpBackend, attempt: TaskAttempt) -> None:
        self.backend = backend
        self.attempt = attempt
        self.done = threading.Event()  # set when the task type's run() returned
        self.cancelled = False

    def service(self, name: str, who: str) -> ServiceConfig:
        return resolve_service(self.backend.settings.services, name, who)

    def caller(self, name: str, who: str, cancelled: threading.Event) -> Caller:
        service = self.service(name, who)
        return Caller(
            name,
            service,
            self.backend.client(name, service),
            who=who,
            on_pushback=lambda seconds: self.backend.pushback(
                self.attempt, dict.fromkeys(service.pools, seconds)
            ),
            cancelled=cancelled,
            take_tokens=self.tokens_taker(service),
            pause_left=self.pause_checker(service),
        )

    def tokens_taker(self, service: ServiceConfig) -> Callable[[], float]:
        """Takes the rate tokens of one request beyond the one the attempt's grant paid for
        (the weights the backend asks the pools for: see `HttpBackend.pool_requests`)."""
        weights = dict.fromkeys(service.pools, 1)
        take = self.backend.context.take_tokens
        return lambda: take(weights)

    def pause_checker(self, service: ServiceConfig) -> Callable[[], float]:
        """How long a pushback in force in the service's pools still lasts (weight 0 takes
        no token): the attempt's first request waits it out although its grant paid."""
        weights = dict.fromkeys(service.pools, 0)
        take = self.backend.context.take_tokens
        return lambda: take(weights) if weights else 0.0

    def keybook(self, kind: str) -> KeyBook:
        return KeyBook(self.backend.context.store, self.attempt, kind)

    def live_attempts(self) -> set[str]:
        return self.backend.live_attempts()


class HttpBackend(Backend[HttpSettings]):
    """Runs attempts in worker threads; HTTP attempts with their services' pools."""

    driver: ClassVar[str] = "http"
    settings_model: ClassVar[type[BackendSettings]] = HttpSettings
    poll_interval: ClassVar[float | None] = None

    def __init__(self, name: str, settings: HttpSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        # Its `workers` (default: the engine's parallelism) threads run every attempt.
        self._threads = ThreadBackend[HttpSettings](f"{name}-workers", settings, context)
        self._lock = threading.Lock()
        self._mine: dict[str, Session] = {}
        self._draining: list[Session] = []
        self._clients: dict[str, httpx.Client] = {}

    # -- what sessions use ------------------------------------------------------------------

    def client(self, name: str, service: ServiceConfig) -> httpx.Client:
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = make_client(service)
            return client

    def pushback(self, attempt: TaskAttempt, pools: dict[str, float]) -> None:
        """Report throttling to the pools now, from the attempt's thread (the attempt runs on
        and tries again): grants stop at once, not at the engine's next look at it."""
        if pools:
            self.context.pushback(pools)

    def live_attempts(self) -> set[str]:
        with self._lock:
            return set(self._mine) | {s.attempt.attempt_id for s in self._draining}

    # -- the Backend contract ---------------------------------------------------------------

    def submit(self, attempt: TaskAttempt) -> None:
        if attempt.task.type in HTTP_TASK_TYPES:
            session = Session(self, attempt)
            with self._lock:
                if attempt.attempt_id in self._mine:
                    return  # submitted before: never run twice
                self._mine[attempt.attempt_id] = session
            with _sessions_lock:
                _sessions[attempt.attempt_id] = session
        self._threads.submit(attempt)

    def poll(self, attempt_id: str) -> AttemptStatus:
        return self._threads.poll(attempt_id)

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            session = self._mine.get(attempt_id)
            if session is not None:
                session.cancelled = True
        self._threads.cancel(attempt_id)  # sets the attempt's `cancelled` event

    def release(self, attempt_id: str) -> None:
        self._threads.release(attempt_id)
        with self._lock:
            session = self._mine.pop(attempt_id, None)
            if session is not None and not session.done.is_set():
                # Still stopping its remote work (a job's cancel request): close() waits.
                self._draining.append(session)
            self._draining = [s for s in self._draining if not s.done.is_set()]
        if session is not None and session.done.is_set():
            with _sessions_lock:
                _sessions.pop(attempt_id, None)

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        model = HTTP_TASK_TYPES.get(task.type)
        if model is None or not task.HasField("config"):
            return ()
        config = model.from_any(task.config)
        assert isinstance(config, HttpRequest | HttpJob)
        service = resolve_service(self.settings.services, config.service, f"task '{task.id.name}'")
        return [PoolRequest(pool) for pool in service.pools]

    def check(self) -> CheckResult:
        problems = []
        for name, service in sorted(self.settings.services.items()):
            if service.auth is not None:
                try:
                    service.auth.token(name)
                except HttpConfigError as exc:
                    problems.append(str(exc))
        if problems:
            return CheckResult(False, "; ".join(problems))
        names = ", ".join(sorted(self.settings.services)) or "no services"
        return CheckResult(True, f"services: {names}")

    def close(self) -> None:
        with self._lock:
            draining = [*self._draining, *(s for s in self._mine.values() if s.cancelled)]
        for session in draining:  # let cancel requests of remote jobs go out
            if not session.done.wait(timeout=15.0):
                log.warning(
                    "http attempt still stopping at close", attempt_id=session.attempt.attempt_id
                )
        with _sessions_lock:
            for session in draining:
                _sessions.pop(session.attempt.attempt_id, None)
        self._threads.close()
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            client.close()

    def forget(self, session: Session) -> None:
        """Called by a session's run when it ends after its attempt was released."""
        with self._lock:
            released = session.attempt.attempt_id not in self._mine
        if released:
            with _sessions_lock:
                _sessions.pop(session.attempt.attempt_id, None)
