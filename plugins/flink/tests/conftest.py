"""Fixtures of taskfabric-flink's unit tests: an isolated home."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    """No test reads the user's config or writes to the user's data folder."""
    return taskfabric_home
