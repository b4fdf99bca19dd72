# docs/plugins/examples/backend_threads.py
"""An in-process backend on `ThreadBackend`: every attempt's thread holds a connection to the
backend's SQLite database, which its tasks reach with `connection()`; what a task writes is
committed only when its attempt succeeds."""

from __future__ import annotations

import contextvars
import sqlite3
from typing import ClassVar

from taskfabric.backends import ThreadBackend
from taskfabric.plugin_api import AttemptPhase, AttemptStatus, BackendSettings, TaskAttempt

__all__ = ["SqliteBackend", "SqliteSettings", "connection"]

_current: contextvars.ContextVar[sqlite3.Connection] = contextvars.ContextVar("sqlite")


def connection() -> sqlite3.Connection:
    """The database connection of the attempt this thread runs."""
    try:
        return _current.get()
    except LookupError:
        raise RuntimeError("connection() works in tasks that the sqlite backend runs") from None


class SqliteSettings(BackendSettings):
    database: str  # the SQLite file
    workers: int | None = None  # threads; default: the engine's parallelism


class SqliteBackend(ThreadBackend[SqliteSettings]):
    driver: ClassVar[str] = "sqlite"
    settings_model: ClassVar[type[BackendSettings]] = SqliteSettings

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        conn = sqlite3.connect(self.settings.database, timeout=30)
        token = _current.set(conn)
        try:
            status = super().run_attempt(attempt)  # inputs in, the task, outputs stored
            if status.phase is AttemptPhase.SUCCEEDED:
                conn.commit()
            else:
                conn.rollback()
            return status
        finally:
            _current.reset(token)
            conn.close()
