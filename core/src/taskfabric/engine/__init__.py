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
from taskfabric.engine._process import ProcessBackend, ProcessRun
from taskfabric.engine._util import EngineShutdown, NodeEvent
from taskfabric.engine._workers import WorkerPool

__all__ = [
    "BackendNotConfiguredError",
    "Engine",
    "EngineShutdown",
    "ExecutionBusyError",
    "ExecutionNotFoundError",
    "ExecutionResult",
    "LoadError",
    "LocalBackend",
    "NodeEvent",
    "ProcessBackend",
    "ProcessRun",
    "WorkerPool",
    "load_code",
    "load_object",
    "run_workflow",
]
