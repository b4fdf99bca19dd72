"""Engines of taskfabric-spark's tests (a module of its own: `from conftest import` would find
whichever conftest.py pytest imported first when several test folders run in one session)."""

from __future__ import annotations

from pathlib import Path

from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins


def make_engine(plugins: Plugins, data_root: Path, **config: object) -> Engine:
    return Engine(
        Config.model_validate({"storage": StorageConfig(data_root=data_root), **config}),
        plugins=plugins,
    )
