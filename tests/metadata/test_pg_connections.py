"""PostgreSQL: the run path through psycopg (`_pgrun`) writes what SQLAlchemy writes, and each
process holds a bounded, documented number of connections (`_connections`): a pool that
runs out, or a server with no slot left, is an error that says which budget to raise, and
one that the engine takes for an outage (the execution is left to be resumed), never a
lost execution; a connection the server closed is replaced before anyone uses it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from taskfabric.metadata import (
    AttemptRecord,
    Batch,
    EventRecord,
    ExecutionRecord,
    MetadataStore,
    NodeRecord,
    _connections,
    database_out_of_reach,
    engine_pool_size,
    integrity_errors,
    out_of_connections_hint,
)

NOW = 1_700_000_000.0


def _rows(store: MetadataStore) -> dict[str, list[tuple[Any, ...]]]:
    found = {}
    with store.engine.connect() as conn:
        for table in ("executions", "node_executions", "node_attempts"):
            found[table] = sorted(tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {table}"))
        found["events"] = sorted(
            tuple(r)[1:] for r in conn.exec_driver_sql("SELECT * FROM events")
        )  # without the serial id
    return found


def _calls(store: MetadataStore) -> None:
    """What an engine process records for a one-task execution, and a little more."""
    rec = ExecutionRecord(
        id="e1", project="p", domain="d", name="n", workflow_name="wf", phase="QUEUED",
        created_at=NOW, code={"file": "/x.py"},
    )  # fmt: skip
    store.create_execution(rec)
    with pytest.raises(integrity_errors()):  # the name is taken
        store.create_execution(ExecutionRecord(**{**vars(rec), "id": "e2"}))
    ((claimed, fresh),) = store.claim_queued("me", now=NOW + 1, limit=5)
    assert (claimed.id, claimed.phase, claimed.owner, fresh) == ("e1", "RUNNING", "me", True)
    assert store.claim_queued("you", now=NOW + 1, limit=5) == []
    start = Batch()
    node = NodeRecord("e1", "n0", "task", "RUNNING", name="t", started_at=NOW + 2, attempts=1)
    attempt = AttemptRecord("e1", "n0", 1, "RUNNING", started_at=NOW + 2, backend="box")
    start.node(node)
    start.attempt(attempt)
    start.event(EventRecord("e1", "n0", 1, "RUNNING", NOW + 2))
    start.attempt_handle(node, AttemptRecord(**{**vars(attempt), "handle": "starting:x"}))
    store.apply(start)
    store.record_attempt_handle(node, AttemptRecord(**{**vars(attempt), "handle": "pid:1"}))
    assert store.cancel_requested("e1", NOW) is None
    assert store.request_cancel("e1", "stop", now=NOW + 3) == "RUNNING"
    assert store.cancel_requested("e1", NOW) == "stop"
    end = Batch()
    end.update_execution("e1", phase="FAILED", finished_at=NOW + 4, error={"code": "E"}, owner="")
    end.node(NodeRecord("e1", "n0", "task", "FAILED", name="t", attempts=1, error={"code": "E"}))
    end.attempt(AttemptRecord("e1", "n0", 1, "FAILED", log_links=[{"name": "o", "uri": "f"}]))
    end.event(EventRecord("e1", "n0", 1, "FAILED", NOW + 4, "E"))
    end.event(EventRecord("e1", "", 0, "FAILED", NOW + 4, "E"))
    store.apply(end)
    got = store.get_execution("e1")
    assert got is not None and (got.phase, got.error, got.owner) == ("FAILED", {"code": "E"}, "")
    assert store.find_by_name("p", "d", "n") == got
    (row,) = store.attempts("e1")
    assert (row.phase, row.handle) == ("FAILED", "pid:1")
    assert row.log_links == [{"name": "o", "uri": "f"}]


def test_the_postgres_run_path_writes_what_sqlalchemy_writes(
    postgres_schema: Callable[[str], str],
) -> None:
    found = []
    for fast in (True, False):
        store = MetadataStore(postgres_schema("pgrun"))
        assert store._pg is not None
        if not fast:
            store._pg = None  # every call through SQLAlchemy
        try:
            _calls(store)
            found.append(_rows(store))
        finally:
            store.close()
    assert found[0] == found[1]


def _backends_of(url: str, name: str) -> set[int]:
    """The server processes serving connections named `name` (this test process's)."""
    admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        pids = conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
            {"n": name},
        ).scalars()
        found = {int(p) for p in pids}
    admin.dispose()
    return found


def test_a_store_holds_at_most_its_pool_size_and_says_so_when_it_runs_out(
    postgres_schema: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_connections, "POOL_TIMEOUT_SECONDS", 0.2)
    url = postgres_schema("budget")
    # Connections this process opened before (another test's store, not yet collected)
    # are not this store's: counted apart.
    from taskfabric.metadata._connections import _application_name

    before = _backends_of(url, _application_name())
    store = MetadataStore(url, pool_size=2)
    try:
        held = [store.engine.connect() for _ in range(2)]
        name = held[0].exec_driver_sql("SHOW application_name").scalar()
        assert name == _application_name() and str(name).startswith("taskfabric ")
        assert len(_backends_of(url, str(name)) - before) == 2
        with pytest.raises(sa.exc.TimeoutError) as caught:
            store.get_execution("nothing")
        assert database_out_of_reach(caught.value)  # the engine leaves the execution be
        hint = out_of_connections_hint(caught.value, 2)
        assert hint is not None and "[metadata] pool_size" in hint and "(2)" in hint
        for conn in held:
            conn.close()
        assert store.get_execution("nothing") is None
        assert len(_backends_of(url, str(name)) - before) == 2
    finally:
        store.close()
    refused = sa.exc.OperationalError(
        "connect", {}, Exception("FATAL: remaining connection slots are reserved")
    )
    hint = out_of_connections_hint(refused)
    assert database_out_of_reach(refused)
    assert hint is not None and "max_connections" in hint
    assert out_of_connections_hint(ValueError("no")) is None


def test_engine_processes_are_sized_by_their_executions() -> None:
    assert [engine_pool_size(n) for n in (1, 4, 8, 16)] == [3, 3, 4, 6]


def test_a_connection_the_server_closed_is_replaced_before_use(
    postgres_schema: Callable[[str], str],
) -> None:
    """No pre-ping round trip at each checkout: the socket of a connection the server closed
    (a restart, pg_terminate_backend) is readable, and it is replaced at checkout."""
    url = postgres_schema("dead")
    store = MetadataStore(url, pool_size=1)
    try:
        with store.engine.connect() as conn:
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        admin = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with admin.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
            for _ in range(100):  # until it is gone
                if not conn.execute(
                    sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
                ).scalar():
                    break
        admin.dispose()
        assert store.get_execution("nothing") is None  # the run path's checkout
        with store.engine.connect() as conn:  # and SQLAlchemy's
            assert conn.exec_driver_sql("SELECT pg_backend_pid()").scalar() != pid
    finally:
        store.close()


def test_the_api_answers_503_only_when_the_database_is_out_of_reach() -> None:
    """A request failing for connections exhausted or a lost server answers 503 (try again);
    one failing for a bug (SQLite's missing table is an OperationalError too) stays a 500."""
    import sqlite3

    import psycopg

    from taskfabric.server._app import _database_unavailable

    def wrapped(cause: Exception) -> Exception:
        return sa.exc.OperationalError("SELECT 1", {}, cause)

    assert _database_unavailable(sa.exc.TimeoutError("QueuePool limit of size 4 overflow 0"))
    assert _database_unavailable(wrapped(psycopg.OperationalError("server closed")))
    assert _database_unavailable(psycopg.OperationalError("connection is lost"))
    assert _database_unavailable(wrapped(sqlite3.OperationalError("database is locked")))
    assert not _database_unavailable(wrapped(sqlite3.OperationalError("no such table: x")))
    assert not _database_unavailable(ValueError("a bug"))
