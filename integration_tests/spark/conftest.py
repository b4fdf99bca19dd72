"""Fixtures of the Spark integration tests: a real standalone master and worker on 127.0.0.1
for the whole run (stopped at the end, checked to have no application left), the plugin
registered by hand, isolated homes, and engines configured like a user's TOML file."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from spark_light_conf import LIGHT_CONF

import taskfabric_spark.hooks
from taskfabric.config import Config, load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_spark._local_backend import SparkLocalBackend
from taskfabric_spark._submit_backend import SparkSubmitBackend
from taskfabric_spark.testing import StandaloneCluster, standalone_cluster


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    with standalone_cluster(tmp_path_factory.mktemp("spark-cluster"), cores=2) as cluster:
        yield cluster
        left = cluster.wait_for_no_apps(timeout=60)
        assert not left, f"Spark applications left running on the master: {left}"


@pytest.fixture(scope="session", autouse=True)
def stop_local_spark_at_the_end() -> Iterator[None]:
    """The spark-local backend's context lives as long as the process: stop it at the end."""
    yield
    from pyspark.sql import SparkSession

    session = SparkSession.getActiveSession() or SparkSession._instantiatedSession
    if session is not None:
        session.stop()


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.register(taskfabric_spark.hooks, name="taskfabric-spark:spark")
    plugins.add_driver(BACKENDS_GROUP, "spark-local", SparkLocalBackend)
    plugins.add_driver(BACKENDS_GROUP, "spark-submit", SparkSubmitBackend)
    with use_plugins(plugins):
        yield plugins


def submit_config_text(cluster: StandaloneCluster, data_root: Path, extra: str = "") -> str:
    conf = ", ".join(
        f'"{k}" = {v if isinstance(v, int) else repr(v)}' for k, v in LIGHT_CONF.items()
    ).replace("'", '"')
    return textwrap.dedent(f"""\
        [storage]
        data_root = "{data_root}"

        [task_types]
        spark = "cluster"

        [backends.cluster]
        driver = "spark-submit"
        master = "{cluster.master_url}"
        master_webui = "{cluster.webui_url}"
        conf = {{ {conf} }}
        """) + textwrap.dedent(extra)


@pytest.fixture
def submit_config(
    spark_cluster: StandaloneCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """A config file whose spark tasks run on the standalone cluster; named by
    $TASKFABRIC_CONFIG, as a user's would be."""
    path = tmp_path / "taskfabric.toml"
    path.write_text(submit_config_text(spark_cluster, tmp_path / "data"), encoding="utf-8")
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(path))
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "data"))
    return path


@pytest.fixture
def submit_engine(submit_config: Path, plugins: Plugins) -> Iterator[Engine]:
    config: Config = load_config(submit_config)
    engine = Engine(config, plugins=plugins)
    yield engine
    engine.close()
