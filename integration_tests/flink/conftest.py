"""Fixtures of the Flink integration tests: one real standalone session cluster on 127.0.0.1
for the whole run (started from the PyFlink installation by `taskfabric_flink.cluster`, stopped
at the end, checked to have no job left running), the plugin registered by hand, isolated
homes, and engines configured like a user's TOML file."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskfabric_flink.hooks
from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_flink._backends import FlinkClusterBackend, FlinkLocalBackend
from taskfabric_flink.cluster import SessionCluster, session_cluster


@pytest.fixture(scope="session")
def flink_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SessionCluster]:
    with session_cluster(tmp_path_factory.mktemp("flink-cluster"), slots=4) as cluster:
        yield cluster
        left = cluster.wait_for_no_jobs(timeout=60)
        assert not left, f"Flink jobs left running on the cluster: {left}"


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    return taskfabric_home


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.register(taskfabric_flink.hooks, name="taskfabric-flink:flink")
    plugins.add_driver(BACKENDS_GROUP, "flink-local", FlinkLocalBackend)
    plugins.add_driver(BACKENDS_GROUP, "flink-cluster", FlinkClusterBackend)
    with use_plugins(plugins):
        yield plugins


def config_text(data_root: Path, backend: str) -> str:
    return textwrap.dedent(f"""\
        [storage]
        data_root = "{data_root}"

        [task_types]
        flink = "flink"

        [backends.flink]
        """) + textwrap.dedent(backend)


def _engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Plugins, backend: str
) -> Iterator[Engine]:
    path = tmp_path / "taskfabric.toml"
    path.write_text(config_text(tmp_path / "data", backend), encoding="utf-8")
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(path))
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "data"))
    engine = Engine(load_config(path), plugins=plugins)
    yield engine
    engine.close()


@pytest.fixture
def cluster_config_text(flink_cluster: SessionCluster) -> str:
    return f'driver = "flink-cluster"\nrest_url = "{flink_cluster.rest_url}"\n'


@pytest.fixture
def cluster_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Plugins, cluster_config_text: str
) -> Iterator[Engine]:
    yield from _engine(tmp_path, monkeypatch, plugins, cluster_config_text)


@pytest.fixture
def local_engine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Plugins
) -> Iterator[Engine]:
    yield from _engine(tmp_path, monkeypatch, plugins, 'driver = "flink-local"\n')


@pytest.fixture
def engine_with_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugins: Plugins
) -> Iterator[Engine]:
    """flink-local with Flink options of its own, which tasks' options go over."""
    backend = (
        'driver = "flink-local"\n'
        'conf = { "parallelism.default" = 2, "pipeline.auto-watermark-interval" = "300 ms" }\n'
    )
    yield from _engine(tmp_path, monkeypatch, plugins, backend)
