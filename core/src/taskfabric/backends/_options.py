"""Per-task settings of a backend: `@task(backend_options={driver: {...}})`."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from google.protobuf import json_format

from taskfabric.core.v1 import tasks_pb2

__all__ = ["TaskOptionsError", "task_options"]


class TaskOptionsError(ValueError):
    """A task sets a backend option its backend does not let tasks set."""


def task_options(
    template: tasks_pb2.TaskTemplate,
    drivers: Collection[str],
    allowed: Collection[str],
    *,
    backend: str,
    where: str = "",
) -> dict[str, Any]:
    """The entry of `template.backend_options` for one of `drivers` (the first found), as
    plain Python values (JSON numbers come back as int when whole).

    Raises TaskOptionsError naming the key when the task sets a key outside `allowed` (the
    keys the backend's operator lets tasks set), with how to fix it."""
    if not template.HasField("backend_options"):
        return {}
    options = json_format.MessageToDict(template.backend_options)
    for driver in drivers:
        if driver in options:
            found: dict[str, Any] = _whole_numbers(options[driver])
            break
    else:
        return {}
    refused = sorted(set(found) - set(allowed))
    if refused:
        prefix = f"{where}: " if where else ""
        may = ", ".join(sorted(allowed)) or "nothing"
        raise TaskOptionsError(
            f"{prefix}backend_options[{driver!r}] sets {', '.join(refused)}, which backend "
            f"'{backend}' does not let tasks set (tasks may set: {may}); remove it from the "
            f"task, or let tasks set it with `task_overrides` in [backends.{backend}]"
        )
    return found


def _whole_numbers(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value
