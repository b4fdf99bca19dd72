"""Fixtures for the type engine tests: a private engine and a local blob store."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfabric.storage import LocalBlobStore
from taskfabric.types import TransformContext, TypeEngine


@pytest.fixture
def engine() -> TypeEngine:
    return TypeEngine.with_builtins()


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


@pytest.fixture
def ctx(store: LocalBlobStore, tmp_path: Path) -> TransformContext:
    return TransformContext(
        store=store, raw_prefix=store.uri("raw", "exec-1", "node-a"), work_dir=tmp_path / "work"
    )
