"""taskfabric-flink: Flink tasks, Flink Tables as typed values, and the `flink-local` and
`flink-cluster` backends.

```python
from pyflink.table import Table, TableEnvironment
from taskfabric import task
from taskfabric_flink import FROM_ATTEMPT, Flink

@task(config=Flink(parallelism=2, runtime_mode="BATCH"))
def numbers(n: int, t_env: TableEnvironment = FROM_ATTEMPT) -> Table:
    return t_env.from_elements([(i,) for i in range(n)], ["n"])
```

See docs/plugins/flink.md.
"""

from taskfabric_flink._config import Flink
from taskfabric_flink._environment import (
    FROM_ATTEMPT,
    FlinkEnvironmentError,
    job_name,
    stream_env,
    table_env,
)
from taskfabric_flink._errors import FlinkJobError
from taskfabric_flink._streaming import request_stop, run_until_stopped
from taskfabric_flink._task_type import FlinkTaskType

__version__ = "0.1.0"

__all__ = [
    "FROM_ATTEMPT",
    "Flink",
    "FlinkEnvironmentError",
    "FlinkJobError",
    "FlinkTaskType",
    "__version__",
    "job_name",
    "request_stop",
    "run_until_stopped",
    "stream_env",
    "table_env",
]
