"""The durable engine: runs compiled workflows, records every transition, resumes."""

# Re-exported for code written against earlier versions; new code imports them from their
# public homes: taskfabric.backends (backend bases), taskfabric.plugin_api (NodeEvent).
from taskfabric.backends import LocalBackend, ProcessBackend, ProcessRun
from taskfabric.engine._backends import BackendNotConfiguredError, Backends
from taskfabric.engine._engine import Engine, ExecutionBusyError, ExecutionNotFoundError
from taskfabric.engine._launching import CodeNotIsolatedError, ExecutionNameTakenError
from taskfabric.engine._loader import LoadError, load_code, load_object
from taskfabric.engine._results import ExecutionResult
from taskfabric.engine._serving import ExecutionWorker
from taskfabric.engine._shared import SharedEngine, run_workflow, shared_engine
from taskfabric.engine._util import EngineShutdown
from taskfabric.engine._workers import WorkerPool
from taskfabric.plugin_api import NodeEvent

__all__ = [
    "BackendNotConfiguredError",
    "Backends",
    "CodeNotIsolatedError",
    "Engine",
    "EngineShutdown",
    "ExecutionBusyError",
    "ExecutionNameTakenError",
    "ExecutionNotFoundError",
    "ExecutionResult",
    "ExecutionWorker",
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
