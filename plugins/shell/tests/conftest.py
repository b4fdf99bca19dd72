"""Fixtures of taskfabric-shell's tests: an isolated home, the plugin registered by hand (never
auto-loaded from the environment), and an engine on a throwaway data root."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import taskfabric_shell.hooks
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins, use_plugins


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    """No test reads the user's config or writes to the user's data folder (the core's
    `taskfabric_home` fixture, from its pytest plugin)."""
    return taskfabric_home


@pytest.fixture
def bare_plugins() -> Iterator[Plugins]:
    """Only the core's built-in plugins: what a machine without taskfabric-shell sees."""
    plugins = Plugins(autoload=False)
    with use_plugins(plugins):
        yield plugins


@pytest.fixture
def plugins(bare_plugins: Plugins) -> Iterator[Plugins]:
    """The core's built-ins plus this plugin's hook module, registered for the test only."""
    name = bare_plugins.register(taskfabric_shell.hooks, name="taskfabric-shell:shell")
    yield bare_plugins
    bare_plugins.unregister(name)


@pytest.fixture
def engine(plugins: Plugins, tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(Config(storage=StorageConfig(data_root=tmp_path / "data")), plugins=plugins)
    yield eng
    eng.close()
