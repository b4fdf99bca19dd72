"""The hook module of taskfabric-flink (entry point `flink` in the `taskfabric.hooks` group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskfabric.plugin_api import TaskType, hookimpl
from taskfabric.types import TypeTransformer
from taskfabric_flink._table import FlinkTableTransformer
from taskfabric_flink._task_type import FlinkTaskType


@hookimpl
def taskfabric_task_types() -> Sequence[TaskType]:
    return [FlinkTaskType()]


@hookimpl
def taskfabric_type_transformers() -> Sequence[TypeTransformer[Any]]:
    return [FlinkTableTransformer()]
