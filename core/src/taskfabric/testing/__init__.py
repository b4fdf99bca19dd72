"""Testing kit for backend plugins: the backend conformance suite, as a pytest plugin.

```python
# plugins/foo/tests/test_conformance.py
from taskfabric.testing import BackendConformance

class TestFooConformance(BackendConformance):
    backend = {"driver": "foo", "some_setting": 1}  # the [backends.<name>] table
```

pytest loads this module in every session (entry point `pytest11: taskfabric`), so it
imports nothing at import time: no pytest, no engine, no plugins. `BackendConformance` and
the helpers load on first use. The tasks the suite runs (`taskfabric.testing._tasks`) are
imported again by module name in the processes that out-of-process backends start, where
pytest may not be installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from taskfabric.testing._conformance import BackendConformance
    from taskfabric.testing._harness import DeadlineExceededError, DirectAttempts
    from taskfabric.testing._stores import BlobStoreConformance

__all__ = ["BackendConformance", "BlobStoreConformance", "DeadlineExceededError", "DirectAttempts"]

_LAZY = {
    "BackendConformance": "taskfabric.testing._conformance",
    "BlobStoreConformance": "taskfabric.testing._stores",
    "DeadlineExceededError": "taskfabric.testing._harness",
    "DirectAttempts": "taskfabric.testing._harness",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'taskfabric.testing' has no attribute '{name}'")
    import importlib

    return getattr(importlib.import_module(module_name), name)


# No `__dir__` listing the lazy names: pytest and pluggy getattr() every name a plugin module
# lists when they scan it for hooks and fixtures, which would import the whole engine.


# -- pytest hooks ----------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    import pytest

    config.addinivalue_line(
        "markers",
        "taskfabric_conformance: a check of taskfabric's backend conformance suite",
    )
    # Plain asserts of the suite report their operands, like those of test modules.
    pytest.register_assert_rewrite("taskfabric.testing._conformance", "taskfabric.testing._stores")
    # The fixtures (`taskfabric_home`): a module of their own, imported only now.
    import importlib

    fixtures = importlib.import_module("taskfabric.testing._fixtures")
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "taskfabric-fixtures")
