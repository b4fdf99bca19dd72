"""Fixtures of the server tests: a site (config, database) on SQLite and PostgreSQL with real
`taskfabric server` processes, and an in-process app for endpoint tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from server_helpers import Site, postgres_schema_url


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: the default SQLite database under the data root; else a PostgreSQL URL whose
    schema is this test's own (dropped at the end)."""
    if request.param == "sqlite":
        yield None
        return
    base: str = request.getfixturevalue("postgres_url")
    schema = f"tf_server_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(base)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield postgres_schema_url(base, schema)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def site(database: str | None, tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path, database)
    try:
        yield s
    finally:
        s.close()
