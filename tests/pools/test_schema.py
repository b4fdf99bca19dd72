"""Migration 0003 creates exactly the tables that ``taskfabric.pools._schema`` declares."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from pool_helpers import POOL_TABLES

from taskfabric.metadata import HEAD_REVISION, MetadataStore
from taskfabric.metadata._schema import metadata
from taskfabric.pools import _schema


def test_pool_tables_live_on_the_metadata_schema() -> None:
    assert {t.name for t in (_schema.pools, _schema.pool_leases)} <= set(metadata.tables)
    assert set(POOL_TABLES) <= set(metadata.tables)
    assert HEAD_REVISION >= "0003"


def test_the_migration_matches_the_declared_tables(db_url: str) -> None:
    store = MetadataStore(db_url, migrate=False)
    try:
        assert store.current_revision() == HEAD_REVISION
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        store.close()
    ours = [change for change in diff if any(t in repr(change) for t in POOL_TABLES)]
    assert ours == []
