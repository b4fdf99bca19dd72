"""Bases and helpers for backend plugins, and the core's own `local`, `subprocess` and
`sandbox` backends.

The contract itself (`Backend`, `TaskAttempt`, `AttemptStatus`, ...) is in
`taskfabric.plugin_api`; this package holds implementations a backend can stand on:

- `ThreadBackend`: attempts in the engine's process, on worker threads; override
  `run_attempt` to prepare the thread around the task (the `local`, `spark-local` and `http`
  backends);
- `ProcessBackend` / `ProcessRun`: each attempt a local process running `taskfabric-execute`
  (possibly through a launcher such as `spark-submit`), with a log file, its exit read back,
  cancel by process group (SIGTERM, then SIGKILL), kill on close, and re-attach after an
  engine restart (the `subprocess`, `sandbox` and `spark-submit` backends);
- `tail`, `describe_exit`: what error messages about processes quote;
- `attempt_work_dir`, `node_key`: where an attempt's files go, the same in every engine process;
- `task_options`: the settings a task gives its backend (`@task(backend_options=...)`),
  limited to the keys the backend's operator lets tasks set;
- `read_regular`, `check_output_folder`, `check_outputs`, `oversized_outputs`: what an
  attempt that ran apart (a sandbox, a container, a pod) left, checked before it is read: no
  link followed, no output naming a blob that is not the attempt's own or one of its inputs,
  no outputs document over `BackendContext.max_output_bytes` read;
- `execute_task`: one attempt in this process, literals in and out (what `taskfabric-execute`
  and `ThreadBackend.run_attempt` call).

Nothing here imports the engine, the metadata store or the pool manager.
"""

from taskfabric.backends._execute import execute_task, user_traceback
from taskfabric.backends._leftovers import (
    REFUSED,
    check_output_folder,
    check_outputs,
    outputs_too_large_message,
    oversized_outputs,
    read_regular,
)
from taskfabric.backends._local import LocalBackend, LocalSettings
from taskfabric.backends._options import TaskOptionsError, task_options
from taskfabric.backends._paths import attempt_work_dir, node_key
from taskfabric.backends._pids import ProcessIdentity
from taskfabric.backends._process import ProcessBackend, ProcessRun, describe_exit, tail
from taskfabric.backends._sandbox import SandboxBackend, SandboxSettings
from taskfabric.backends._subprocess import SubprocessBackend, SubprocessSettings
from taskfabric.backends._threads import ThreadBackend

__all__ = [
    "REFUSED",
    "LocalBackend",
    "LocalSettings",
    "ProcessBackend",
    "ProcessIdentity",
    "ProcessRun",
    "SandboxBackend",
    "SandboxSettings",
    "SubprocessBackend",
    "SubprocessSettings",
    "TaskOptionsError",
    "ThreadBackend",
    "attempt_work_dir",
    "check_output_folder",
    "check_outputs",
    "describe_exit",
    "execute_task",
    "node_key",
    "outputs_too_large_message",
    "oversized_outputs",
    "read_regular",
    "tail",
    "task_options",
    "user_traceback",
]
