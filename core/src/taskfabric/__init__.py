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

from typing import TYPE_CHECKING

from taskfabric._version import __version__
from taskfabric._wiring import connect as _connect
from taskfabric.lazy import lazy_exports

if TYPE_CHECKING:
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

_SDK = (
    "Cache",
    "Cron",
    "FixedRate",
    "LaunchPlan",
    "Resources",
    "Retry",
    "TaskDefinition",
    "WorkflowDefinition",
    "conditional",
    "map_task",
    "task",
    "workflow",
)
_HOLDS = ("HoldError", "HoldTimeout", "PoolHold", "TaskPools", "hold", "task_pools")
_ERRORS = ("CompilationError", "ExecutionFailedError", "TaskDefinitionError", "TaskfabricError")

#: The SDK is imported on first use of one of its names, so that the command line's start-up
#: (`taskfabric --help`), which imports this package first, does not pay for it.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(_SDK, "taskfabric.sdk"),
        **dict.fromkeys(_HOLDS, "taskfabric.sdk._hold"),
        **dict.fromkeys(_ERRORS, "taskfabric.errors"),
        "Directory": "taskfabric.types",
        "File": "taskfabric.types",
    },
)

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


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
