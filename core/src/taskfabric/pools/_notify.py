"""Grant notices between engine processes on PostgreSQL (``LISTEN`` / ``NOTIFY``).

A pass in one process often grants a lease to a waiter of another process (a release frees a
slot, a refill makes a token). That process would learn of it at its next ``poll``, up to a
poll interval later, and while the lease sits undelivered its slot is idle and its token
spent. So the pass sends ``NOTIFY taskfabric_pool_grants, '<owner>'`` in its own transaction
(PostgreSQL delivers it at commit, and never for a rollback), and each manager that has
subscribers listens on a connection of its own and wakes them at once. A notice is only a
hint to poll now: a lost one (a dropped connection) costs a poll interval, nothing more,
since polling goes on as before. SQLite is one host: there is nothing to listen to.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Engine

from taskfabric.logs import get_logger

CHANNEL = "taskfabric_pool_grants"

log = get_logger("taskfabric.pools")


class GrantListener:
    """Calls the subscribers of ``owner`` when a notice for it arrives (one daemon thread)."""

    def __init__(self, engine: Engine, owner: str, *, reconnect_seconds: float = 1.0) -> None:
        self.engine = engine
        self.owner = owner
        self.reconnect_seconds = reconnect_seconds
        self._subscribers: dict[int, Callable[[], None]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listening = threading.Event()

    def subscribe(self, wake: Callable[[], None]) -> Callable[[], None]:
        """Call ``wake()`` (from the listener thread) on each notice; returns the unsubscribe."""
        key = next(self._ids)
        with self._lock:
            self._subscribers[key] = wake
            if self._thread is None:
                self._stop.clear()
                self._thread = threading.Thread(
                    target=self._run, name="taskfabric-pool-notices", daemon=True
                )
                self._thread.start()

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.pop(key, None)

        return unsubscribe

    def wait_listening(self, timeout: float) -> bool:
        """True once the ``LISTEN`` is in place (for tests and benchmarks)."""
        return self._listening.wait(timeout)

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            thread.join(timeout=5)

    def _wake(self) -> None:
        with self._lock:
            subscribers = list(self._subscribers.values())
        for wake in subscribers:
            try:
                wake()
            except Exception:
                log.exception("pool grant notice subscriber failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            raw: Any = None
            try:
                raw = self.engine.raw_connection()
                conn = raw.driver_connection
                raw.detach()  # its own connection for good: the engine's pool forgets it
                conn.autocommit = True
                conn.execute(f"LISTEN {CHANNEL}")
                self._listening.set()
                self._wake()  # a notice may have gone by while we were not listening
                while not self._stop.is_set():
                    for notice in conn.notifies(timeout=0.5):
                        if notice.payload == self.owner:
                            self._wake()
            except Exception as exc:
                self._listening.clear()
                if self._stop.is_set():
                    break
                log.warning(
                    "pool grant notices lost; polling only until they are back",
                    error=f"{type(exc).__name__}: {exc}",
                )
                self._stop.wait(self.reconnect_seconds)
            finally:
                if raw is not None:
                    try:
                        raw.close()
                    except Exception:
                        log.debug("closing the notice connection failed", exc_info=True)
        self._listening.clear()
