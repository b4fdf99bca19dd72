"""Fixtures for the core's tests: isolation from the user's config and data, and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskfabric.plugins import Plugins, use_plugins

POSTGRES_URL_ENV_VAR = "TASKFABRIC_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    """No test reads the user's config or writes to the user's data folder (the core's
    `taskfabric_home` fixture, from its pytest plugin)."""
    return taskfabric_home


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The SQLAlchemy URL of a PostgreSQL test database. Skips when none is configured, except in
    CI (``CI=true``), where a missing database is an error: CI must never skip these silently."""
    url = os.environ.get(POSTGRES_URL_ENV_VAR, "")
    if url:
        return url
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            f"CI=true but {POSTGRES_URL_ENV_VAR} is not set; .ci/run sets it", pytrace=False
        )
    pytest.skip(
        f"needs PostgreSQL: set {POSTGRES_URL_ENV_VAR}="
        "postgresql+psycopg://USER:PASSWORD@127.0.0.1:5432/DB (bash .ci/run sets one up)"
    )


@pytest.fixture(scope="session")
def postgres_schema(postgres_url: str) -> Iterator[Callable[[str], str]]:
    """`make(prefix)`: the URL of a new schema of its own in the PostgreSQL test database
    (its `search_path`), so that a suite neither sees nor disturbs the tables of others.
    Every schema made is dropped at the end of the session."""
    admin = sa.create_engine(postgres_url)
    made: list[str] = []

    def make(prefix: str) -> str:
        schema = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        with admin.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        # Without waiting for the WAL flush at each commit: that only trades durability
        # against a server crash (locks and visibility are the same), and the tests run
        # many times faster.
        options = f"-csearch_path={schema} -csynchronous_commit=off"
        url = sa.make_url(postgres_url).update_query_dict({"options": options})
        return url.render_as_string(hide_password=False)

    yield make
    with admin.begin() as conn:
        for schema in made:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests that use the database get the `postgres` marker, so `-m "not postgres"` works.
    for item in items:
        if "postgres_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(autouse=True)
def no_installed_plugins() -> Iterator[Plugins]:
    """The core's tests see only the core's built-in plugins, never what happens to be installed
    in the environment; a test registers what it needs on the yielded `Plugins`."""
    plugins = Plugins(autoload=False)
    with use_plugins(plugins):
        yield plugins
