"""The built-in `python` task type: an attempt calls the decorated function."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskfabric.plugin_api import TaskCall, TaskType, hookimpl


class PythonTaskType(TaskType):
    name = "python"
    default_backend = "local"
    description = "calls the decorated Python function"

    def run(self, call: TaskCall) -> Any:
        return call.task.function(**call.inputs)


@hookimpl
def taskfabric_task_types() -> Sequence[TaskType]:
    return [PythonTaskType()]
