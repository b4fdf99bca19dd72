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


class _LazyModule:
    """Stands in for a module until its first attribute is read (see `lazy_module`)."""

    def __init__(self, name: str, owner: str, alias: str) -> None:
        self._name = name
        self._owner = owner
        self._alias = alias

    def __getattr__(self, attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        module = importlib.import_module(self._name)
        setattr(sys.modules[self._owner], self._alias, module)  # later reads skip the proxy
        return getattr(module, attribute)

    def __repr__(self) -> str:
        return f"<module {self._name!r}, imported on first use>"


def lazy_module(name: str, owner: str, alias: str) -> Any:
    """Module `name`, imported when code of module `owner` first reads one of its attributes
    through the global `alias` (which then becomes the module itself).

    For a heavy library that a module needs on some paths only (SQLAlchemy on the local
    SQLite run path, which goes through `sqlite3`)::

        if TYPE_CHECKING:
            import sqlalchemy as sa
        else:
            sa = lazy_module("sqlalchemy", __name__, "sa")
    """
    return _LazyModule(name, owner, alias)
