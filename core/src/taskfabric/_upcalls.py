"""Calls that lower layers make upward, set by the package face before any user code.

The SDK and the types sit below the engine and the plugin system (docs/architecture.md): a
workflow called outside a workflow must run on the engine, and a type with no built-in
transformer must ask the installed plugins. They read the functions to call here, in the
foundation, and `taskfabric._wiring` (run by `taskfabric/__init__.py`) sets them. Keeping the
slots here, not in the SDK, lets the package face set them without importing the SDK, so
`import taskfabric.cli` (for `taskfabric --help`) stays cheap.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

#: Runs a workflow called outside a workflow and returns its outputs: `(workflow, inputs)`.
local_runner: Callable[[Any, Mapping[str, Any]], Any] | None = None

#: Registers the installed plugins' type transformers in a type engine, the first time a type
#: is not built in: `(type_engine) -> None`.
type_fallback: Callable[[Any], None] | None = None
