"""The PostgreSQL one-trip path keeps its prepared statements whatever psycopg did before on
the connection it took from SQLAlchemy's pool."""

from __future__ import annotations

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
