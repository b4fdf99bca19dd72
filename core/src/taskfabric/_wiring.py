"""Where the layers that cannot import each other are connected: run once, by the package
face, before any user code.

The SDK and the types sit below the engine and the plugin system (docs/architecture.md), so
they take what they need from above as a function set here: calling a workflow outside a
workflow runs it on the engine, and a type with no built-in transformer asks the installed
plugins. Both import their module on first use, so `import taskfabric` loads neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskfabric.sdk import WorkflowDefinition, set_local_runner
from taskfabric.types import TypeEngine, set_default_fallback


def _run_on_engine(wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any]) -> Any:
    from taskfabric.engine import run_workflow

    return run_workflow(wf, inputs)


def _load_plugin_transformers(engine: TypeEngine) -> None:
    from taskfabric.plugins import get_plugins

    get_plugins().load_type_transformers(engine)


def connect() -> None:
    """Give the SDK its engine and the type engine its plugins."""
    set_local_runner(_run_on_engine)
    set_default_fallback(_load_plugin_transformers)
