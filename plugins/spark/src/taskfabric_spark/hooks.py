"""The hook module of taskfabric-spark (entry point `spark` in the `taskfabric.hooks` group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskfabric.plugin_api import TaskType, hookimpl
from taskfabric.types import TypeTransformer


@hookimpl
def taskfabric_task_types() -> Sequence[TaskType]:
    from taskfabric_spark._task_type import SparkTaskType

    return [SparkTaskType()]


@hookimpl
def taskfabric_type_transformers() -> Sequence[TypeTransformer[Any]]:
    from taskfabric_spark._dataframe import SparkDataFrameTransformer

    return [SparkDataFrameTransformer()]
