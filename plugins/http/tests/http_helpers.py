"""Types and helpers the test modules share (conftest is not importable by name when several
test folders run in one session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from taskfabric.config import Config
from taskfabric.engine import Engine

MakeConfig = Callable[[str], Config]
MakeEngine = Callable[..., Engine]


def service_toml(name: str, url: str, extra: str = "") -> str:
    return f'[backends.http.services.{name}]\nbase_url = "{url}"\n{extra}\n'


__all__: list[Any] = ["MakeConfig", "MakeEngine", "service_toml"]
