"""Fixtures of taskfabric-http's tests: an isolated home, the plugin registered by hand (never
auto-loaded from the environment), real HTTP services on 127.0.0.1 and engines whose config
declares them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from http_helpers import MakeConfig, MakeEngine

import taskfabric_http.hooks
from taskfabric.config import Config, load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_http import HttpBackend
from taskfabric_http.testing import QuotaServer


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    """No test reads the user's config or writes to the user's data folder (the core's
    `taskfabric_home` fixture, from its pytest plugin)."""
    return taskfabric_home


@pytest.fixture
def bare_plugins() -> Iterator[Plugins]:
    """Only the core's built-in plugins: what a machine without taskfabric-http sees."""
    plugins = Plugins(autoload=False)
    with use_plugins(plugins):
        yield plugins


@pytest.fixture
def plugins(bare_plugins: Plugins) -> Iterator[Plugins]:
    """The core's built-ins plus this plugin's hooks and driver, for the test only."""
    name = bare_plugins.register(taskfabric_http.hooks, name="taskfabric-http:http")
    bare_plugins.add_driver(BACKENDS_GROUP, "http", HttpBackend)
    yield bare_plugins
    bare_plugins.unregister(name)


@pytest.fixture
def server() -> Iterator[QuotaServer]:
    with QuotaServer() as srv:
        yield srv


@pytest.fixture
def make_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MakeConfig:
    """A config file with `text` (TOML) and a data root of the test's own, loaded as the
    engine and `taskfabric` find it ($TASKFABRIC_CONFIG)."""

    def make(text: str) -> Config:
        path = tmp_path / "taskfabric.toml"
        if "[backends.http." in text and "[backends.http]" not in text:
            text = '[backends.http]\ndriver = "http"\n\n' + text
        path.write_text(f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n{text}', encoding="utf-8")
        monkeypatch.setenv("TASKFABRIC_CONFIG", str(path))
        monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(tmp_path / "data"))
        return load_config(path)

    return make


@pytest.fixture
def make_engine(plugins: Plugins, make_config: MakeConfig) -> Iterator[MakeEngine]:
    engines: list[Engine] = []

    def make(text: str, **_: Any) -> Engine:
        engine = Engine(make_config(text), plugins=plugins)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()
