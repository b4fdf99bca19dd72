"""The durable engine: runs compiled workflows, records every transition, resumes."""

from taskfabric.engine._engine import (
    BackendNotConfiguredError,
    Engine,
    ExecutionBusyError,
    ExecutionNotFoundError,
    ExecutionResult,
    run_workflow,
)
from taskfabric.engine._loader import LoadError, load_code, load_object
from taskfabric.engine._local import LocalBackend
from taskfabric.engine._runner import NodeEvent

__all__ = [
    "BackendNotConfiguredError",
    "Engine",
    "ExecutionBusyError",
    "ExecutionNotFoundError",
    "ExecutionResult",
    "LoadError",
    "LocalBackend",
    "NodeEvent",
    "load_code",
    "load_object",
    "run_workflow",
]
