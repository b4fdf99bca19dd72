"""`FlinkTaskType`: runs the task's function as a PyFlink client that builds and runs jobs."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any, ClassVar

from taskfabric.logs import get_logger
from taskfabric.plugin_api import TaskCall, TaskConfig, TaskType
from taskfabric_flink._config import Flink, merged_conf
from taskfabric_flink._environment import (
    SUBMIT_ARGS_ENV,
    client_environment,
    environment_for,
    gateway_started,
    reset_environments,
)
from taskfabric_flink._errors import error_class, summarize_exception

__all__ = ["FlinkTaskType"]

log = get_logger("taskfabric.flink")


def _collect_streams(result: Any) -> Any:
    """A DataStream returned for a list output is run and collected (its job is named after
    the attempt like every other); tuples of outputs are looked into."""
    datastream = sys.modules.get("pyflink.datastream.data_stream")
    stream_type = getattr(datastream, "DataStream", None)
    if stream_type is None:
        return result
    if isinstance(result, stream_type):
        with result.execute_and_collect() as values:
            return list(values)
    if isinstance(result, tuple) and any(isinstance(v, stream_type) for v in result):
        collected = [_collect_streams(v) for v in result]
        fields = getattr(type(result), "_fields", None)
        return type(result)(*collected) if fields else tuple(collected)
    return result


class FlinkTaskType(TaskType):
    """Calls the decorated function as a PyFlink client, with the attempt's environments in
    its parameters annotated `StreamExecutionEnvironment` / `TableEnvironment`
    (`Flink.context_parameters`).

    On the `flink-local` and `flink-cluster` backends the attempt's process is set up before
    the task runs (the gateway goes through `flink run`, so every environment the code
    creates submits to the backend's target with the task's options, its jobs named after
    the attempt). On any other backend the task sets the same up for a mini-cluster in its
    own process, if no Flink gateway runs there yet. Errors from Flink are summarized
    (`FlinkJobError` subclasses named after the root cause, a UDF's Python exception first).
    """

    name: ClassVar[str] = "flink"
    config_model: ClassVar[type[TaskConfig] | None] = Flink
    default_backend: ClassVar[str] = "flink-local"
    description: ClassVar[str] = "calls the function as a PyFlink client that runs Flink jobs"

    def run(self, call: TaskCall) -> Any:
        if SUBMIT_ARGS_ENV not in os.environ and not gateway_started():
            # Not on a Flink backend: a mini-cluster in this process, with the task's options.
            attempt = call.attempt_id or f"{call.task.short_name}-{uuid.uuid4().hex[:12]}"
            env = client_environment(
                dict(os.environ),
                ["-t", "local"],
                merged_conf({}, call.config),
                attempt,
                sys.executable,
            )
            os.environ.update(env)
        elif gateway_started() and SUBMIT_ARGS_ENV not in os.environ:
            log.warning(
                "a Flink gateway already runs in this process: the task's Flink options "
                "apply only where the task sets them itself",
                task=call.task.short_name,
            )
        try:
            arguments = dict(call.inputs)
            for name, hint in call.task.interface.context.items():
                arguments[name] = environment_for(hint)
            return _collect_streams(call.task.function(**arguments))
        except Exception as exc:
            summary = summarize_exception(exc)
            if summary is None:
                raise
            code, message, frames = summary
            if frames:
                message = f"{message}\n{frames}"
            raise error_class(code)(message).with_traceback(exc.__traceback__) from None
        finally:
            reset_environments()
