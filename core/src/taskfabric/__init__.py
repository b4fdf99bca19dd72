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
    "LaunchPlan",
    "Resources",
    "Retry",
    "TaskDefinition",
    "TaskDefinitionError",
    "TaskfabricError",
    "WorkflowDefinition",
    "__version__",
    "conditional",
    "map_task",
    "task",
    "workflow",
]
