"""Fixtures of the registry tests: a migrated database on SQLite and PostgreSQL, a registry
on it with a fake clock, a recording launcher."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from registry_helpers import Clock, RecordingLauncher

from taskfabric.metadata import MetadataStore
from taskfabric.registry import Registry
from taskfabric.storage import LocalBlobStore

_TABLES = ("launch_plan_states", "registry_entities", "code_bundles", "events", "executions")


@pytest.fixture(scope="session")
def postgres_registry_url(postgres_schema: Callable[[str], str]) -> str:
    """A migrated schema of its own in the test database."""
    url = postgres_schema("tf_registry")
    MetadataStore(url).close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated database, once on SQLite and once on PostgreSQL (emptied for each test)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("postgres_registry_url")
    store = MetadataStore(url, migrate=False)
    with store.engine.begin() as conn:
        for table in _TABLES:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    store.close()
    return url


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def metadata(db_url: str) -> Iterator[MetadataStore]:
    store = MetadataStore(db_url)
    yield store
    store.close()


@pytest.fixture
def registry(metadata: MetadataStore, tmp_path: Path, clock: Clock) -> Registry:
    return Registry(metadata, LocalBlobStore(tmp_path / "blobs"), clock=clock)


@pytest.fixture
def launcher(metadata: MetadataStore) -> RecordingLauncher:
    return RecordingLauncher(metadata)
