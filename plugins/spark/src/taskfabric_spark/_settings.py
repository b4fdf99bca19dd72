"""Settings shared by the Spark backends, and their pool requests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field, field_validator

from taskfabric.core.v1 import tasks_pb2
from taskfabric.plugin_api import BackendContext, BackendSettings, PoolRequest
from taskfabric_spark._config import Spark, check_conf

__all__ = ["SparkBackendSettings", "pool_requests", "task_config"]


class SparkBackendSettings(BackendSettings):
    """Keys every Spark backend takes."""

    #: Spark properties every application of this backend gets (tasks' own win).
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)
    #: The address the driver binds to and advertises.
    driver_host: str = "127.0.0.1"
    #: The Java installation to run Spark with; default: JAVA_HOME, else `java` on PATH.
    java_home: str = ""
    #: A resource pool ([pools.<name>]) that every attempt holds while it runs, so that
    #: many workflows share the cluster without overrunning it.
    pool: str = ""
    #: What one slot of `pool` is: one application, or one executor (an attempt then holds
    #: its `executor_instances`, default 1).
    pool_unit: Literal["application", "executor"] = "application"

    @field_validator("conf", mode="before")
    @classmethod
    def _check_conf(cls, conf: Any) -> Any:
        if not isinstance(conf, Mapping):
            return conf  # pydantic says what a table is
        return dict(check_conf(conf, "conf"))

    def spark_conf(self) -> dict[str, str]:
        return {key: str(value) for key, value in self.conf.items()}


def task_config(context: BackendContext, task: tasks_pb2.TaskTemplate) -> Spark | None:
    """The task's Spark config, if it is a Spark task with one."""
    try:
        config = context.task_type(task.type).config_of(task)
    except LookupError:
        return None
    return config if isinstance(config, Spark) else None


def pool_requests(
    settings: SparkBackendSettings, context: BackendContext, task: tasks_pb2.TaskTemplate
) -> list[PoolRequest]:
    if not settings.pool:
        return []
    weight = 1
    if settings.pool_unit == "executor":
        config = task_config(context, task)
        instances = settings.conf.get("spark.executor.instances", 1)
        if config is not None and config.executor_instances is not None:
            instances = config.executor_instances
        weight = max(1, int(instances))
    return [PoolRequest(settings.pool, weight)]
