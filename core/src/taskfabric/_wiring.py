"""Where the layers that cannot import each other are connected: run once, by the package
face, before any user code.

The SDK and the types sit below the engine and the plugin system (docs/architecture.md), so
they call what they need from above through `taskfabric._upcalls`, set here: calling a
workflow outside a workflow runs it on the engine, and a type with no built-in transformer
asks the installed plugins. Neither the SDK nor the engine nor the plugins are imported here:
each is imported on first use, so `import taskfabric.cli` stays cheap.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskfabric import _upcalls


def _run_on_engine(wf: Any, inputs: Mapping[str, Any]) -> Any:
    from taskfabric.engine import run_workflow

    return run_workflow(wf, inputs)


def _load_plugin_transformers(engine: Any) -> None:
    from taskfabric.plugins import get_plugins

    get_plugins().load_type_transformers(engine)


def connect() -> None:
    """Give the SDK its engine and the type engine its plugins."""
    _upcalls.local_runner = _run_on_engine
    _upcalls.type_fallback = _load_plugin_transformers
