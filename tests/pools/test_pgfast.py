"""The PostgreSQL one-trip path keeps its prepared statements whatever psycopg did before on
the connection it took from SQLAlchemy's pool."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from pool_helpers import holder

from taskfabric.metadata import MetadataStore
from taskfabric.pools import PoolManager, PoolSpec


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_grants_after_a_rollback_on_a_connection_psycopg_prepared_on(db_url: str) -> None:
    # psycopg prepares a statement on the server after it ran 5 times on a connection, and on
    # a ROLLBACK it drops every prepared statement of the session (DEALLOCATE ALL), the pool
    # path's own named ones too. The pool path takes such a connection from SQLAlchemy's pool:
    # every idle connection of the pool has run a statement often enough.
    store = MetadataStore(db_url, migrate=False)
    manager = PoolManager(store.engine, {"a": PoolSpec("a", 1)}, owner="a")
    try:
        conns = [store.engine.connect() for _ in range(3)]
        for conn in conns:
            for _ in range(8):
                conn.execute(sa.text("SELECT count(*) FROM pools")).scalar_one()
            conn.commit()
        for conn in conns:
            conn.close()
        for round_ in range(3):
            first = manager.request(holder(f"first{round_}"), {"a": 1})
            assert first is not None
            # declined: the transaction that read the pool is rolled back
            assert manager.request(holder(f"second{round_}"), {"a": 1}) is None
            handed = manager.release(first) + manager.poll()
            assert [lease.holder for lease in handed] == [holder(f"second{round_}")]
            manager.release_many(handed)
    finally:
        manager.close()
        store.close()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_pool_limited_by_slots_alone_grants_in_one_round_trip(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskfabric.pools._pgfast import PgOneTrip

    two_trips: list[str] = []
    lock_with_usage = PgOneTrip.lock_with_usage

    def counted(self: PgOneTrip, names: Any) -> Any:
        two_trips.append(",".join(names))
        return lock_with_usage(self, names)

    monkeypatch.setattr(PgOneTrip, "lock_with_usage", counted)
    store = MetadataStore(db_url, migrate=False)
    specs = {"a": PoolSpec("a", 2), "r": PoolSpec("r", 5, rate=100.0)}
    manager = PoolManager(store.engine, specs, owner="a")
    try:
        manager.sync()
        first = manager.request(holder("first"), {"a": 1})
        assert first is not None and two_trips == []  # one round trip
        manager.set_capacity("a", 1)  # full now: the one trip inserts nothing
        assert manager.request(holder("second"), {"a": 1}) is None  # queued
        assert two_trips == ["a"]
        manager.set_capacity("a", None)
        # somebody waits: not granted ahead of it, whatever the room
        assert manager.request(holder("third"), {"a": 1}) is None
        manager.release(first)
        handed = manager.poll()
        assert sorted(lease.holder.execution_id for lease in handed) == ["ex-second", "ex-third"]
        manager.release_many(handed)
        manager.pushback("a", 60.0)  # paused: nothing granted
        assert manager.request(holder("fourth"), {"a": 1}) is None
        two_trips.clear()
        assert manager.request(holder("rated"), {"r": 1}) is not None
        assert two_trips == ["r"]  # a rate is decided in Python: two round trips
        assert [s.in_use for s in manager.status()] == [0, 1]
    finally:
        manager.close()
        store.close()
