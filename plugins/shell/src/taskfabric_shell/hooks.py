"""The hook module of taskfabric-shell (entry point `shell` in the `taskfabric.hooks` group)."""

from __future__ import annotations

from collections.abc import Sequence

from taskfabric.plugin_api import TaskType, hookimpl


@hookimpl
def taskfabric_task_types() -> Sequence[TaskType]:
    from taskfabric_shell._task_type import ShellTaskType

    return [ShellTaskType()]
