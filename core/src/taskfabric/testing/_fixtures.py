"""Fixtures the core's pytest plugin gives every test session: `taskfabric_home`.

Registered by `taskfabric.testing.pytest_configure`, so importing this module (and pytest)
waits until pytest has started.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def taskfabric_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """A fresh folder per test holding the config (empty: the embedded defaults) and the data
    root, so the test neither reads the user's config nor writes to the user's data folder.

    Request it, or make it automatic in a conftest.py:

    ```python
    @pytest.fixture(autouse=True)
    def _isolated(taskfabric_home: Path) -> Path:
        return taskfabric_home
    ```
    """
    home = tmp_path_factory.mktemp("taskfabric-home")
    config = home / "config.toml"
    config.write_text("# empty: the embedded defaults\n", encoding="utf-8")
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(config))
    monkeypatch.setenv("TASKFABRIC_DATA_ROOT", str(home / "data"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(name, str(home / name.lower()))
    yield home
    # The engine that `wf(...)` calls opened for this test's config is not the next test's.
    shared = sys.modules.get("taskfabric.engine._shared")
    if shared is not None:
        shared.shared_engine.close()
