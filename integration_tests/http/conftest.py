"""Fixtures of the HTTP services suite: real services on 127.0.0.1 that enforce their own
quota, engines whose config declares them, and the plugin registered by hand."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import taskfabric_http.hooks
from taskfabric.config import Config, load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_http import HttpBackend


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    name = plugins.register(taskfabric_http.hooks, name="taskfabric-http:http")
    plugins.add_driver(BACKENDS_GROUP, "http", HttpBackend)
    with use_plugins(plugins):
        yield plugins
    plugins.unregister(name)


WriteConfig = Callable[[str], Path]


@pytest.fixture
def write_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteConfig:
    """Write `taskfabric.toml` (data root of the test's own) and point $TASKFABRIC_CONFIG at it."""

    def write(text: str) -> Path:
        path = tmp_path / "taskfabric.toml"
        head = f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n[backends.http]\ndriver = "http"\n'
        path.write_text(f"{head}\n{text}", encoding="utf-8")
        monkeypatch.setenv("TASKFABRIC_CONFIG", str(path))
        monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "data"))
        return path

    return write


@pytest.fixture
def make_engine(plugins: Plugins, write_config: WriteConfig) -> Iterator[Callable[[str], Engine]]:
    engines: list[Engine] = []

    def make(text: str) -> Engine:
        config: Config = load_config(write_config(text))
        engine = Engine(config, plugins=plugins)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
