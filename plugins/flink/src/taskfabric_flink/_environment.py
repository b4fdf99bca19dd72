"""The attempt's Flink environments, and how a PyFlink client is pointed at a mini-cluster or
a session cluster.

PyFlink starts its Java gateway on first use. With `SUBMIT_ARGS="remote ARGS"` in the
environment it starts it through `flink run ARGS`: the Flink CLI then sets the context
environment, so *every* environment the task's code creates — `stream_env()`, `table_env()`,
or its own `StreamExecutionEnvironment.get_execution_environment()` /
`TableEnvironment.create(...)`, as PyFlink's example programs do — submits its jobs to the
target (`-t local`: a mini-cluster inside the gateway's JVM; `-m HOST:PORT`: a session
cluster) with the options given as `-Dkey=value`, `pipeline.name` (the attempt's job name)
included. The backends set these variables for the attempt's process; a `flink` task on
another backend sets them itself before the gateway starts.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyflink.datastream import StreamExecutionEnvironment
    from pyflink.table import StreamTableEnvironment

__all__ = [
    "ATTEMPT_ENV",
    "CONF_ENV",
    "FROM_ATTEMPT",
    "FlinkEnvironmentError",
    "client_environment",
    "current_conf",
    "environment_for",
    "environment_kind",
    "gateway_started",
    "job_name",
    "reset_environments",
    "stream_env",
    "submit_args",
    "table_env",
]

#: The attempt whose jobs this process submits (their `pipeline.name` is `job_name(it)`).
ATTEMPT_ENV = "TASKFABRIC_FLINK_ATTEMPT"
#: The Flink options of the attempt (JSON object), as given to the gateway with -D.
CONF_ENV = "TASKFABRIC_FLINK_CONF"
#: PyFlink's own variable: the arguments of the gateway (see the module docstring).
SUBMIT_ARGS_ENV = "SUBMIT_ARGS"

#: What every job name starts with; the rest is the attempt id.
JOB_PREFIX = "taskfabric-"


class FlinkEnvironmentError(RuntimeError):
    """The Flink environment of a task cannot be made (PyFlink missing, Java missing)."""


class _FromAttempt:
    """The default of a task's environment parameter (`FROM_ATTEMPT`): the task type passes
    the attempt's environment there, so the parameter's value is never this one in a run."""

    def __repr__(self) -> str:
        return "FROM_ATTEMPT"

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise FlinkEnvironmentError(
            f"this environment parameter was not given (its default, FROM_ATTEMPT, was used: "
            f"asked for .{name}): a flink task in a workflow receives the attempt's "
            "environment there; when calling the function yourself, pass one, e.g. "
            "env=StreamExecutionEnvironment.get_execution_environment()"
        )


#: The default to give a task's `StreamExecutionEnvironment` / `TableEnvironment` parameters
#: (`def f(n: int, t_env: TableEnvironment = FROM_ATTEMPT)`): a type checker then accepts a
#: workflow's call that passes the inputs only, as the engine does, and a run gets the
#: attempt's environment there. Typed `Any` so that it fits either annotation.
FROM_ATTEMPT: Any = _FromAttempt()


def job_name(attempt_id: str) -> str:
    """The name of every Flink job an attempt submits: how the backend finds them."""
    return f"{JOB_PREFIX}{attempt_id}"


def submit_args(target: list[str], conf: Mapping[str, str]) -> str:
    """`SUBMIT_ARGS` for the gateway: `remote` (the gateway runs inside `flink run`), the
    target (`-t local` or `-m HOST:PORT`) and each option as `-Dkey=value`."""
    args = ["remote", *target]
    args += [f"-D{key}={value}" for key, value in sorted(conf.items())]
    return shlex.join(args)


def python_bin_first(env: dict[str, str], python: str) -> dict[str, str]:
    """`env` with the folder of `python` first on PATH: PyFlink's UDF workers run `python`
    (the option `python.executable` names it too, but its boot script looks up PATH)."""
    folder = str(Path(python).parent)
    parts = [p for p in env.get("PATH", os.defpath).split(os.pathsep) if p and p != folder]
    env["PATH"] = os.pathsep.join([folder, *parts])
    return env


def client_environment(
    env: dict[str, str], target: list[str], conf: Mapping[str, str], attempt_id: str, python: str
) -> dict[str, str]:
    """The environment variables of a process that runs a flink attempt's client."""
    full = {
        **conf,
        "pipeline.name": job_name(attempt_id),
        "python.executable": python,
        "python.client.executable": python,
    }
    env[SUBMIT_ARGS_ENV] = submit_args(target, full)
    env[ATTEMPT_ENV] = attempt_id
    env[CONF_ENV] = json.dumps(dict(conf), sort_keys=True)
    return python_bin_first(env, python)


def gateway_started() -> bool:
    """Whether this process already talks to a Flink gateway (whose options are then fixed)."""
    gateway_module = sys.modules.get("pyflink.java_gateway")
    return gateway_module is not None and getattr(gateway_module, "_gateway", None) is not None


def current_conf() -> dict[str, str]:
    """The attempt's Flink options, as the backend (or the task type) gave them."""
    try:
        conf = json.loads(os.environ.get(CONF_ENV) or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in conf.items()} if isinstance(conf, dict) else {}


@dataclass
class _Environments:
    stream: StreamExecutionEnvironment
    table: StreamTableEnvironment | None = None


_lock = threading.Lock()
#: The attempt's environments, made on first use ("envs" -> _Environments).
_current: dict[str, _Environments] = {}


def _import_pyflink() -> Any:
    try:
        from pyflink import datastream
    except ImportError as exc:
        raise FlinkEnvironmentError(
            f"PyFlink does not import ({exc}): install apache-flink into the Python that runs "
            "flink tasks (docs/plugins/flink.md, 'Install')"
        ) from exc
    return datastream


def _environments() -> _Environments:
    with _lock:
        if "envs" not in _current:
            datastream = _import_pyflink()
            try:
                stream = datastream.StreamExecutionEnvironment.get_execution_environment()
            except Exception as exc:  # the gateway's JVM did not start
                raise FlinkEnvironmentError(
                    f"the Flink client did not start: {exc}. Flink needs Java 11, 17 or 21 "
                    "(JAVA_HOME or `java` on PATH)"
                ) from exc
            _current["envs"] = _Environments(stream)
        return _current["envs"]


def stream_env() -> StreamExecutionEnvironment:
    """The attempt's `StreamExecutionEnvironment`: options of the task and its backend
    applied, jobs named after the attempt, submitted where the backend says."""
    return _environments().stream


def table_env() -> StreamTableEnvironment:
    """The attempt's table environment, over `stream_env()` (so tables and data streams
    convert into each other), in the task's runtime mode (BATCH or STREAMING). Tables given
    to the task as inputs belong to it."""
    envs = _environments()
    with _lock:
        if envs.table is None:
            from pyflink.table import EnvironmentSettings, StreamTableEnvironment

            batch = current_conf().get("execution.runtime-mode", "").upper() == "BATCH"
            settings = (
                EnvironmentSettings.in_batch_mode()
                if batch
                else EnvironmentSettings.in_streaming_mode()
            )
            envs.table = StreamTableEnvironment.create(envs.stream, environment_settings=settings)
        return envs.table


#: The classes a task's function may take as parameters, by the qualified name of a class in
#: their MRO: a StreamTableEnvironment is a TableEnvironment.
_CONTEXT_CLASSES: dict[str, str] = {
    "pyflink.datastream.stream_execution_environment.StreamExecutionEnvironment": "stream",
    "pyflink.table.table_environment.StreamTableEnvironment": "table",
    "pyflink.table.table_environment.TableEnvironment": "table",
}


def environment_kind(hint: Any) -> str | None:
    """'stream' for a parameter annotated `StreamExecutionEnvironment`, 'table' for
    `StreamTableEnvironment` or `TableEnvironment`, else None. Read from the class's name, so
    that deciding needs no PyFlink import."""
    if not isinstance(hint, type):
        return None
    return _CONTEXT_CLASSES.get(f"{hint.__module__}.{hint.__qualname__}")


def environment_for(hint: Any) -> Any:
    """The attempt's environment a parameter annotated `hint` receives."""
    kind = environment_kind(hint)
    if kind == "stream":
        return stream_env()
    if kind == "table":
        return table_env()
    raise TypeError(f"{hint!r} is not a Flink environment a task can receive")


def reset_environments() -> None:
    """Forget the environments (after the attempt): the next task of this process gets new
    ones on the same gateway."""
    with _lock:
        _current.clear()
