"""`Spark`: the config object of a Spark task, `@task(config=Spark(...))`, and the merge of
a task's Spark properties over its backend's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from google.protobuf import message
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from taskfabric.plugin_api import TaskConfig
from taskfabric_spark import spark_pb2

__all__ = ["RESERVED_KEYS", "Spark", "check_conf", "merged_conf"]

#: Properties the backend owns: where the application runs and how it is started.
RESERVED_KEYS: dict[str, str] = {
    "spark.master": "the backend's `master` (spark-submit) or `cores` (spark-local) sets it",
    "spark.submit.deployMode": "the spark-submit backend runs drivers in client mode",
    "spark.app.name": "taskfabric names each application after its task and attempt",
    "spark.driver.host": "the backend's `driver_host` sets it",
    "spark.driver.bindAddress": "the backend's `driver_host` sets it",
}

#: Spark's size strings: a number with an optional unit (b, k, m, g, t, p; "kb", "mb", ...).
_SIZE = re.compile(r"^[0-9]+([bkmgtp]b?)?$", re.IGNORECASE)

ConfValue = str | int | float | bool


def _conf_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    hint = ""
    if isinstance(value, list | tuple | set):
        hint = " (a list property is one string: join its items with commas, e.g. 'a,b')"
    raise TypeError(
        f"conf[{key!r}] is a {type(value).__name__}: Spark properties are strings, numbers "
        f"or booleans{hint}"
    )


def check_conf(conf: Mapping[str, Any], where: str) -> dict[str, str]:
    """`conf` with string values; ValueError naming every key that Spark would not take or
    that the backend owns."""
    problems: list[str] = []
    out: dict[str, str] = {}
    for key, value in conf.items():
        if not isinstance(key, str) or not key.startswith("spark."):
            problems.append(
                f"{where}[{key!r}]: Spark properties start with 'spark.' "
                "(e.g. 'spark.sql.shuffle.partitions')"
            )
            continue
        if key in RESERVED_KEYS:
            problems.append(f"{where}[{key!r}] cannot be set here: {RESERVED_KEYS[key]}")
            continue
        try:
            out[key] = _conf_value(key, value)
        except TypeError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise ValueError("; ".join(problems))
    return out


def _size(value: str | None, name: str) -> str | None:
    if value is not None and not _SIZE.match(value):
        raise ValueError(
            f"{name}={value!r} is not a Spark size: write a number with a unit, e.g. '512m' or '4g'"
        )
    return value


class Spark(TaskConfig):
    """A task that runs with a SparkSession: `@task(config=Spark(...))`.

    ```python
    @task(config=Spark(conf={"spark.sql.shuffle.partitions": 8}, executor_memory="2g"))
    def daily_totals(events: DataFrame) -> DataFrame:
        return events.groupBy("day").count()
    ```

    The function runs in the Spark driver; `taskfabric_spark.spark_session()` returns its
    session. `conf` (Spark properties, `spark.*`) and the typed shortcuts are merged over the
    backend's own `conf`; the shortcuts win over the same keys in `conf`.
    """

    task_type: ClassVar[str] = "spark"
    proto_message: ClassVar[type[message.Message] | None] = spark_pb2.SparkConfig

    conf: dict[str, ConfValue] = Field(default_factory=dict)
    executor_instances: int | None = Field(default=None, ge=1)
    executor_memory: str | None = None
    executor_cores: int | None = Field(default=None, ge=1)
    driver_memory: str | None = None

    _problem: str | None = PrivateAttr(default=None)

    if not TYPE_CHECKING:  # mypy keeps the typed signature that pydantic gives Spark(...)

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                super().__init__()
                self._problem = _describe(exc)

    def _check_valid(self) -> None:
        if self._problem is not None:
            raise ValueError(self._problem)

    def check_interface(self, interface: Any) -> None:
        """Raises the problem of invalid arguments, so that `@task` names the task."""
        self._check_valid()

    def to_proto(self) -> message.Message:
        self._check_valid()
        return super().to_proto()

    @field_validator("conf", mode="before")
    @classmethod
    def _check_conf(cls, conf: Any) -> Any:
        if not isinstance(conf, Mapping):
            return conf  # pydantic says what a dict is
        return dict(check_conf(conf, "Spark conf"))

    @field_validator("executor_memory")
    @classmethod
    def _check_executor_memory(cls, value: str | None) -> str | None:
        return _size(value, "executor_memory")

    @field_validator("driver_memory")
    @classmethod
    def _check_driver_memory(cls, value: str | None) -> str | None:
        return _size(value, "driver_memory")

    def spark_conf(self) -> dict[str, str]:
        """The task's own Spark properties, shortcuts included."""
        self._check_valid()
        out = {key: str(value) for key, value in self.conf.items()}
        shortcuts = {
            "spark.executor.instances": self.executor_instances,
            "spark.executor.memory": self.executor_memory,
            "spark.executor.cores": self.executor_cores,
            "spark.driver.memory": self.driver_memory,
        }
        out.update({key: str(value) for key, value in shortcuts.items() if value is not None})
        return out


def _describe(exc: ValidationError) -> str:
    """The problems of `Spark(...)` arguments, one clause each: the argument and the fix."""
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "Spark(...)"
        text = str(error["msg"]).removeprefix("Value error, ").removeprefix("Spark conf: ")
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(Spark.model_fields)
            text = f"Spark() has no argument {where!r}; its arguments are: {allowed}"
        elif not text.startswith(("conf[", where)):
            text = f"{where}: {text}"
        problems.append(text)
    return "invalid Spark(...) arguments: " + "; ".join(problems)


def merged_conf(backend_conf: Mapping[str, str], config: TaskConfig | None) -> dict[str, str]:
    """The backend's Spark properties with the task's over them."""
    out = dict(backend_conf)
    if isinstance(config, Spark):
        out.update(config.spark_conf())
    return out
