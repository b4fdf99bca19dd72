"""A process's PostgreSQL connections: how many it may hold, and a cheap check at checkout.

Each process keeps one pool of at most `pool_size` connections (no overflow beyond it): what a
deployment needs from PostgreSQL's `max_connections` is then the sum of the processes' sizes
(docs/server.md, "Database connections"). A thread that finds every connection in use waits
up to `POOL_TIMEOUT_SECONDS`, then gets SQLAlchemy's `TimeoutError`; PostgreSQL refusing a
new connection (its `max_connections` reached) is an `OperationalError`. Neither fails an
execution: the engine leaves it to be resumed (`database_out_of_reach`), the API answers 503,
and `out_of_connections_hint` says which budget ran out and how to raise it.

SQLAlchemy's `pool_pre_ping` costs a round trip (`;`, with psycopg's autocommit switched on
and off) at every checkout: several per execution, on both sides of the socket. Instead a
connection checked out is pinged only when it sat idle for `IDLE_PING_SECONDS`, or when its
socket has something to read (the server closed it: a restart, an administrator's
`pg_terminate_backend`): then a dead one is replaced before anyone uses it, as pre-ping
would. A connection that dies between its last use and the next within those seconds, with
nothing sent by the server, fails that use: the engine leaves the execution to be resumed,
as for any passing outage of the database (`engine._util.database_out_of_reach`).
"""

from __future__ import annotations

import os
import select
import socket
import time
from typing import TYPE_CHECKING, Any

from taskfabric.lazy import lazy_module

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Engine
else:
    sa = lazy_module("sqlalchemy", __name__, "sa")

__all__ = [
    "DEFAULT_POOL_SIZE",
    "IDLE_PING_SECONDS",
    "database_out_of_reach",
    "engine_pool_size",
    "out_of_connections_hint",
    "postgres_engine",
]

#: The pool of a process that is neither an engine process nor a server (the command line,
#: a `WorkerPool` of its own, tests), and of a server's API, scheduler and worker pool.
DEFAULT_POOL_SIZE = 8
#: A connection idle longer than this is pinged at checkout.
IDLE_PING_SECONDS = 30.0
#: How long a thread waits for one of its process's connections to be free.
POOL_TIMEOUT_SECONDS = 30.0
_IDLE_SINCE = "taskfabric_idle_since"


def engine_pool_size(executions: int) -> int:
    """The connections an engine process running up to `executions` executions at once
    needs: its writes take turns (one transaction at a time, under the store's write lock),
    so one for them, one for the scans and claims of its main thread, and one for every
    four executions' reads (a cancel check each second, a backend's handle)."""
    return 2 + (max(1, executions) + 3) // 4


def _readable(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(poller.poll(0))


def _on_connect(dbapi_connection: Any, record: Any) -> None:
    record.info.pop(_IDLE_SINCE, None)


def _on_checkin(dbapi_connection: Any, record: Any) -> None:
    record.info[_IDLE_SINCE] = time.monotonic()


def _ping(dbapi_connection: Any) -> None:
    before = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        dbapi_connection.execute(";")
    finally:
        if not dbapi_connection.closed:
            dbapi_connection.autocommit = before


def _on_checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """Replace a connection that died while it sat in the pool (see the module docstring):
    raising DisconnectionError makes the pool discard it and hand out a new one."""
    idle_since = record.info.get(_IDLE_SINCE)
    if idle_since is None:
        return  # just made
    if dbapi_connection.closed or getattr(dbapi_connection, "broken", False):
        raise sa.exc.DisconnectionError("the connection was closed")
    try:
        suspect = time.monotonic() - idle_since >= IDLE_PING_SECONDS or _readable(
            dbapi_connection.pgconn.socket
        )
    except (OSError, ValueError, AttributeError):
        suspect = True
    if suspect:
        try:
            _ping(dbapi_connection)
        except Exception as exc:
            raise sa.exc.DisconnectionError(f"the connection is dead: {exc}") from exc


def _application_name() -> str:
    """How the process's connections show in `pg_stat_activity`: taskfabric, the host and
    pid (the owner that executions record), so that an operator sees who holds them."""
    return f"taskfabric {socket.gethostname()}:{os.getpid()}"[:63]


def postgres_engine(url: Any, *, pool_size: int) -> Engine:
    """A SQLAlchemy engine on PostgreSQL holding at most `pool_size` connections."""
    query = dict(url.query)
    connect_args: dict[str, Any] = {}
    if "application_name" not in query:
        connect_args["application_name"] = _application_name()
    engine = sa.create_engine(
        url,
        pool_size=max(1, pool_size),
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args=connect_args,
    )
    sa.event.listen(engine, "connect", _on_connect)
    sa.event.listen(engine, "checkin", _on_checkin)
    sa.event.listen(engine, "checkout", _on_checkout)
    engine._taskfabric_pool_size = max(1, pool_size)  # type: ignore[attr-defined]
    return engine


#: Words of PostgreSQL's refusals when it has no connection slot left.
_NO_SLOT = ("too many clients", "remaining connection slots are reserved", "too many connections")


def out_of_connections_hint(exc: BaseException, pool_size: int | None = None) -> str | None:
    """What to do about `exc` when it says connections ran out (this process's pool, or
    PostgreSQL's `max_connections`), else None."""
    text = str(exc)
    if type(exc).__name__ == "TimeoutError" and "QueuePool limit" in text:
        size = f" ({pool_size})" if pool_size else ""
        return (
            f"every connection of this process's pool{size} stayed in use for "
            f"{POOL_TIMEOUT_SECONDS:g} s: raise [metadata] pool_size, or run fewer "
            "executions per engine process ([server] executions_per_worker); see "
            "docs/server.md, 'Database connections'"
        )
    if any(words in text for words in _NO_SLOT):
        return (
            "PostgreSQL has no connection slot left (its max_connections): raise it in "
            "postgresql.conf above the sum of every process's pool (docs/server.md, "
            "'Database connections'), or lower [metadata] pool_size"
        )
    return None


#: Modules whose OperationalError / InterfaceError say the database is out of reach (a
#: restart, connections exhausted, a dropped link, SQLite's lock held too long).
_DATABASE_ERROR_MODULES = ("sqlalchemy", "psycopg", "sqlite3")


def database_out_of_reach(exc: BaseException) -> bool:
    """`exc` says the metadata database could not be reached or used for now, not that the
    execution is wrong: it is left to be resumed rather than aborted. Every connection of
    the process's pool in use for too long (SQLAlchemy's pool `TimeoutError`) is one too."""
    return any(
        cls.__name__ in ("OperationalError", "InterfaceError", "TimeoutError")
        and cls.__module__.split(".")[0] in _DATABASE_ERROR_MODULES
        for cls in type(exc).__mro__
    )
