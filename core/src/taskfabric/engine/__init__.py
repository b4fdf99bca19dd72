"""The durable engine: runs compiled workflows, records every transition, resumes."""

from taskfabric.engine._backends import BackendNotConfiguredError, Backends
from taskfabric.engine._engine import (
    Engine,
    ExecutionBusyError,
    ExecutionNameTakenError,
    ExecutionNotFoundError,
)
from taskfabric.engine._loader import LoadError, load_code, load_object
from taskfabric.engine._local import LocalBackend
from taskfabric.engine._process import ProcessBackend, ProcessRun
from taskfabric.engine._results import ExecutionResult
from taskfabric.engine._shared import SharedEngine, run_workflow, shared_engine
from taskfabric.engine._util import EngineShutdown, NodeEvent
from taskfabric.engine._workers import WorkerPool

__all__ = [
    "BackendNotConfiguredError",
    "Backends",
    "Engine",
    "EngineShutdown",
    "ExecutionBusyError",
    "ExecutionNameTakenError",
    "ExecutionNotFoundError",
    "ExecutionResult",
    "LoadError",
    "LocalBackend",
    "NodeEvent",
    "ProcessBackend",
    "ProcessRun",
    "SharedEngine",
    "WorkerPool",
    "load_code",
    "load_object",
    "run_workflow",
    "shared_engine",
]
