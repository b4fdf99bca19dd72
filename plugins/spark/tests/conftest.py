"""Fixtures of taskfabric-spark's tests: an isolated home, the plugin registered by hand (never
auto-loaded from the environment), one local-mode SparkContext for the whole run (a JVM holds
one), and engines on throwaway data roots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import taskfabric_spark.hooks
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_spark._local_backend import SparkLocalBackend
from taskfabric_spark._submit_backend import SparkSubmitBackend


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    """No test reads the user's config or writes to the user's data folder (the core's
    `taskfabric_home` fixture, from its pytest plugin)."""
    return taskfabric_home


@pytest.fixture(scope="session", autouse=True)
def stop_spark_at_the_end() -> Iterator[None]:
    """The spark-local backend's context lives as long as the process: stop it after the
    last test, so no JVM outlives the run."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    if session is not None:
        session.stop()


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    """The core's built-ins plus this plugin's hook module and drivers, for the test only."""
    plugins = Plugins(autoload=False)
    plugins.register(taskfabric_spark.hooks, name="taskfabric-spark:spark")
    plugins.add_driver(BACKENDS_GROUP, "spark-local", SparkLocalBackend)
    plugins.add_driver(BACKENDS_GROUP, "spark-submit", SparkSubmitBackend)
    with use_plugins(plugins):
        yield plugins
