"""taskfabric: typed, durable workflow orchestration.

```python
from taskfabric import task, workflow, map_task

@task
def square(x: int) -> int:
    return x * x

@workflow
def squares(n: int) -> list[int]:
    return map_task(square)(x=numbers(n=n))
```
"""

from taskfabric._version import __version__
from taskfabric._wiring import connect as _connect
from taskfabric.errors import (
    CompilationError,
    ExecutionFailedError,
    TaskDefinitionError,
    TaskfabricError,
)
from taskfabric.sdk import (
    Cache,
    Cron,
    FixedRate,
    LaunchPlan,
    Resources,
    Retry,
    TaskDefinition,
    WorkflowDefinition,
    conditional,
    map_task,
    task,
    workflow,
)
from taskfabric.sdk._hold import HoldError, HoldTimeout, PoolHold, TaskPools, hold, task_pools
from taskfabric.types import Directory, File

_connect()

__all__ = [
    "Cache",
    "CompilationError",
    "Cron",
    "Directory",
    "ExecutionFailedError",
    "File",
    "FixedRate",
    "HoldError",
    "HoldTimeout",
    "LaunchPlan",
    "PoolHold",
    "Resources",
    "Retry",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskPools",
    "TaskfabricError",
    "WorkflowDefinition",
    "__version__",
    "conditional",
    "hold",
    "map_task",
    "task",
    "task_pools",
    "workflow",
]
