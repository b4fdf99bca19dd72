from __future__ import annotations

from collections.abc import Iterator

import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(load_config())
    yield eng
    eng.close()
