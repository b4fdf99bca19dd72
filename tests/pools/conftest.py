"""Fixtures of the pool tests: a migrated database on SQLite and on PostgreSQL, a fake clock."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pool_helpers import POOL_TABLES, Clock

from taskfabric.metadata import MetadataStore
from taskfabric.pools import PoolManager, PoolSpec


@pytest.fixture(scope="session")
def sqlite_pools_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('pools') / 'pools.db'}"
    MetadataStore(url).close()
    return url


@pytest.fixture(scope="session")
def postgres_pools_url(postgres_schema: Callable[[str], str]) -> str:
    """A migrated schema of its own in the test database."""
    url = postgres_schema("tf_pools")
    MetadataStore(url).close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A migrated database with empty pool tables, once on SQLite and once on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_pools_url")
    store = MetadataStore(url, migrate=False)
    with store.engine.begin() as conn:
        for table in POOL_TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    store.close()
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_manager(db_url: str, clock: Clock) -> Iterator[Callable[..., PoolManager]]:
    """``make_manager(*specs, owner="a", **options)``: a manager on the test database."""
    made: list[tuple[MetadataStore, PoolManager]] = []

    def make(*specs: PoolSpec, owner: str = "a", **options: Any) -> PoolManager:
        store = MetadataStore(db_url, migrate=False)
        options.setdefault("clock", clock)
        manager = PoolManager(store.engine, {s.name: s for s in specs}, owner=owner, **options)
        made.append((store, manager))
        return manager

    yield make
    for store, manager in made:
        manager.close()
        store.close()


@pytest.fixture
def tmp_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    MetadataStore(url).close()
    return url
