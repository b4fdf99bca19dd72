"""Names a package exports but imports only on first use (PEP 562 `__getattr__`)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports each of a package's `exports` (name -> module) on
    first use, and keeps it in the package.

    Loading a plugin's hook module imports its package first, and so does every
    `taskfabric` command that loads plugins. A package whose face imports its backend at
    once makes each of them pay for the backend's client library (httpx, kubernetes,
    boto3). Name those in `exports` and list them under `if TYPE_CHECKING:` for type
    checkers::

        if TYPE_CHECKING:
            from my_plugin._backend import MyBackend

        __getattr__ = lazy_exports(__name__, {"MyBackend": "my_plugin._backend"})
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
