"""`Flink`: the config object of a Flink task, `@task(config=Flink(...))`, and the merge of a
task's Flink options over its backend's."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from google.protobuf import message
from pydantic import Field, PrivateAttr, ValidationError, field_validator

from taskfabric.plugin_api import TaskConfig
from taskfabric_flink import flink_pb2
from taskfabric_flink._environment import environment_kind

__all__ = ["RESERVED_KEYS", "Flink", "check_conf", "merged_conf"]

#: Options the backend owns: where jobs run, what they are called, which Python runs UDFs.
RESERVED_KEYS: dict[str, str] = {
    "execution.target": "the backend sets it (flink-local: a mini-cluster; flink-cluster: "
    "its session cluster)",
    "rest.address": "the flink-cluster backend's `rest_url` sets it",
    "rest.port": "the flink-cluster backend's `rest_url` sets it",
    "pipeline.name": "taskfabric names every job after its attempt (cancel and re-attach "
    "find it by that name)",
    "python.client.executable": "the backend's `python` sets it",
}

ConfValue = str | int | float | bool


def _conf_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    hint = ""
    if isinstance(value, list | tuple | set):
        hint = " (a list option is one string: join its items with ';', e.g. 'a;b')"
    raise TypeError(
        f"conf[{key!r}] is a {type(value).__name__}: Flink options are strings, numbers or "
        f"booleans{hint}"
    )


def check_conf(conf: Mapping[str, Any], where: str) -> dict[str, str]:
    """`conf` with string values; ValueError naming every key Flink would not take or that
    the backend owns."""
    problems: list[str] = []
    out: dict[str, str] = {}
    for key, value in conf.items():
        if not isinstance(key, str) or not key or " " in key or "." not in key:
            problems.append(
                f"{where}[{key!r}]: a Flink option is a dotted key such as "
                "'parallelism.default' or 'state.backend.type'"
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


class Flink(TaskConfig):
    """A task that builds and runs Flink jobs: `@task(config=Flink(...))`.

    ```python
    @task(config=Flink(parallelism=2, runtime_mode="BATCH"))
    def totals(orders: Table) -> Table:
        return orders.group_by(col("region")).select(col("region"), col("amount").sum)
    ```

    The function runs in a PyFlink client and receives the attempt's environments in its
    parameters annotated `StreamExecutionEnvironment` / `TableEnvironment` (which are not
    inputs); `taskfabric_flink.stream_env()` and `taskfabric_flink.table_env()` return the
    same ones, and any environment the function creates itself gets the same options.
    `conf` (Flink options) and the typed shortcuts are merged over the backend's own `conf`;
    the shortcuts win over the same keys in `conf`.
    """

    task_type: ClassVar[str] = "flink"
    proto_message: ClassVar[type[message.Message] | None] = flink_pb2.FlinkConfig

    conf: dict[str, ConfValue] = Field(default_factory=dict)
    parallelism: int | None = Field(default=None, ge=1)
    runtime_mode: Literal["BATCH", "STREAMING"] | None = None
    checkpoint_interval_ms: int | None = Field(default=None, ge=10)
    #: `run_until_stopped()` stops the streaming job with a savepoint after this many seconds
    #: (unless a stop request comes first).
    stop_after_seconds: float | None = Field(default=None, gt=0)

    _problem: str | None = PrivateAttr(default=None)

    if not TYPE_CHECKING:  # mypy keeps the typed signature that pydantic gives Flink(...)

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

    def context_parameters(self, hints: Mapping[str, Any]) -> list[str]:
        """The function's parameters annotated `StreamExecutionEnvironment`,
        `StreamTableEnvironment` or `TableEnvironment`: the task type passes the attempt's
        environments there; they are not inputs."""
        return [name for name, hint in hints.items() if environment_kind(hint) is not None]

    def to_proto(self) -> message.Message:
        self._check_valid()
        return super().to_proto()

    @field_validator("conf", mode="before")
    @classmethod
    def _check_conf(cls, conf: Any) -> Any:
        if not isinstance(conf, Mapping):
            return conf  # pydantic says what a dict is
        return dict(check_conf(conf, "Flink conf"))

    @field_validator("runtime_mode", mode="before")
    @classmethod
    def _upper_mode(cls, mode: Any) -> Any:
        return mode.upper() if isinstance(mode, str) else mode

    def flink_conf(self) -> dict[str, str]:
        """The task's own Flink options, shortcuts included."""
        self._check_valid()
        out = {key: str(value) for key, value in self.conf.items()}
        shortcuts = {
            "parallelism.default": self.parallelism,
            "execution.runtime-mode": self.runtime_mode,
            "execution.checkpointing.interval": (
                f"{self.checkpoint_interval_ms} ms" if self.checkpoint_interval_ms else None
            ),
        }
        out.update({key: str(value) for key, value in shortcuts.items() if value is not None})
        return out


def _describe(exc: ValidationError) -> str:
    """The problems of `Flink(...)` arguments, one clause each: the argument and the fix."""
    problems: list[str] = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "Flink(...)"
        text = str(error["msg"]).removeprefix("Value error, ").removeprefix("Flink conf: ")
        if error["type"] == "extra_forbidden":
            allowed = ", ".join(Flink.model_fields)
            text = f"Flink() has no argument {where!r}; its arguments are: {allowed}"
        elif where == "runtime_mode":
            text = f"runtime_mode={error.get('input')!r}: write 'BATCH' or 'STREAMING'"
        elif not text.startswith(("conf[", where)):
            text = f"{where}: {text}"
        problems.append(text)
    return "invalid Flink(...) arguments: " + "; ".join(problems)


def merged_conf(backend_conf: Mapping[str, str], config: TaskConfig | None) -> dict[str, str]:
    """The backend's Flink options with the task's over them."""
    out = dict(backend_conf)
    if isinstance(config, Flink):
        out.update(config.flink_conf())
    return out
