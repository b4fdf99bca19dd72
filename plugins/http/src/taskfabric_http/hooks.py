"""The hook module of taskfabric-http (entry point `http` in the `taskfabric.hooks` group)."""

from __future__ import annotations

from collections.abc import Sequence

from taskfabric.plugin_api import TaskType, hookimpl


@hookimpl
def taskfabric_task_types() -> Sequence[TaskType]:
    from taskfabric_http._task_types import HttpJobTaskType, HttpTaskType

    return [HttpTaskType(), HttpJobTaskType()]
