"""Fixtures for the core's tests: isolation from the user's config and data, and PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

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
