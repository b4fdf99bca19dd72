"""Fixtures of the server tests: a site (config, database) on SQLite and PostgreSQL with real
`taskfabric server` processes, and an in-process app for endpoint tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_helpers import Site


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    """None: the default SQLite database under the data root; else the URL of a PostgreSQL
    schema of this test's own."""
    if request.param == "sqlite":
        return None
    make: Callable[[str], str] = request.getfixturevalue("postgres_schema")
    return make("tf_server")


@pytest.fixture
def site(database: str | None, tmp_path: Path) -> Iterator[Site]:
    s = Site(tmp_path, database)
    try:
        yield s
    finally:
        s.close()
