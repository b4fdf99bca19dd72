"""What the conformance suite drives a backend with: a config file, workflow runs with a
deadline, and attempts handed to the backend directly."""

from __future__ import annotations

import dataclasses
import json
import math
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskfabric.core.v1 import tasks_pb2, types_pb2
from taskfabric.engine import Engine, ExecutionResult
from taskfabric.plugin_api import AttemptPhase, AttemptStatus, Backend, TaskAttempt
from taskfabric.sdk import TaskDefinition, WorkflowDefinition
from taskfabric.types import TransformContext, default_engine

#: The backend name the suite's config defines, as in `[backends.conformance]`.
BACKEND_NAME = "conformance"


class DeadlineExceededError(AssertionError):
    """The backend did not get somewhere within the suite's deadline."""


# -- config ----------------------------------------------------------------------------------


def _toml_value(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str | Path):
        # A JSON string is a valid TOML basic string (same escapes, \uXXXX included).
        return json.dumps(str(value))
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v, f"{where}[]") for v in value) + "]"
    if isinstance(value, Mapping):
        items = ", ".join(
            f"{json.dumps(str(k))} = {_toml_value(v, f'{where}.{k}')}" for k, v in value.items()
        )
        return "{" + items + "}"
    if value is None:
        raise TypeError(f"{where} is None, which TOML cannot write: leave the key out")
    raise TypeError(f"{where} is a {type(value).__name__}, which a TOML config cannot hold")


def config_text(
    *,
    data_root: Path,
    backend: Mapping[str, Any],
    task_type: str,
    parallelism: int,
) -> str:
    """The TOML of the suite's isolated config: the backend under test runs `task_type`."""
    if not isinstance(backend.get("driver"), str) or not backend["driver"]:
        raise TypeError(
            f"the conformance class's `backend` table needs a 'driver' key naming the backend "
            f"driver (e.g. {{'driver': 'local'}}), got {dict(backend)!r}"
        )
    lines = [
        "# written by taskfabric.testing for one conformance test",
        "[storage]",
        f"data_root = {_toml_value(data_root, 'data_root')}",
        "[engine]",
        f"parallelism = {parallelism}",
        "[task_types]",
        f"{json.dumps(task_type)} = {json.dumps(BACKEND_NAME)}",
        f"[backends.{BACKEND_NAME}]",
    ]
    lines += [
        f"{json.dumps(str(key))} = {_toml_value(value, f'backends.{BACKEND_NAME}.{key}')}"
        for key, value in backend.items()
    ]
    return "\n".join(lines) + "\n"


# -- task types ------------------------------------------------------------------------------


def with_task_type(
    wf: WorkflowDefinition[Any, Any], task_type: str
) -> WorkflowDefinition[Any, Any]:
    """`wf` as a fresh definition whose tasks declare `task_type` (the suite's tasks are
    `python` tasks; a plugin may test its backend under its own task type)."""
    if task_type == "python":
        return wf
    fresh: WorkflowDefinition[Any, Any] = WorkflowDefinition(wf.function, name=wf.name)
    for template in fresh.compile().tasks:  # the fresh definition's own copy, cached
        template.type = task_type
    return fresh


def template_of(task: TaskDefinition[Any, Any], task_type: str) -> tasks_pb2.TaskTemplate:
    template = tasks_pb2.TaskTemplate()
    template.CopyFrom(task.template())
    template.type = task_type
    return template


# -- running workflows -----------------------------------------------------------------------


def launch(
    engine: Engine,
    wf: WorkflowDefinition[Any, Any],
    inputs: Mapping[str, Any],
    *,
    task_type: str,
    deadline: float,
) -> ExecutionResult:
    """Run `wf` to its end, failing (instead of hanging) when it takes over `deadline` s."""
    outcome: list[ExecutionResult] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            outcome.append(engine.launch(with_task_type(wf, task_type), inputs))
        except BaseException as exc:  # handed to the test's thread
            failure.append(exc)

    worker = threading.Thread(target=run, name=f"conformance-{wf.short_name}", daemon=True)
    worker.start()
    worker.join(deadline)
    if failure:
        raise failure[0]
    if not outcome:
        raise DeadlineExceededError(
            f"workflow {wf.short_name} did not end within {deadline:g}s: the backend never "
            "reported its attempts' ends (does it call attempt.notify, or set poll_interval?)"
        )
    return outcome[0]


def python_outputs(
    engine: Engine, wf: WorkflowDefinition[Any, Any], result: ExecutionResult
) -> Any:
    assert result.succeeded, f"execution {result.execution_id} {result.phase}: {result.error}"
    return result.python_outputs(wf, engine.store, engine.work_root / result.execution_id)


# -- direct attempts -------------------------------------------------------------------------


class DirectAttempts:
    """Builds TaskAttempts the way the engine does and hands them to the backend directly.

    Inputs travel both in memory and at `inputs_uri` (written through the engine's literal
    store), so out-of-process backends find them; outputs go under the execution's prefix.
    """

    def __init__(self, engine: Engine, *, task_type: str, deadline: float) -> None:
        self.engine = engine
        self.task_type = task_type
        self.deadline = deadline
        self._notified: dict[str, threading.Event] = {}
        self._handles: dict[str, list[str]] = {}

    def backend(self, task: TaskDefinition[Any, Any]) -> Backend[Any]:
        """The backend the engine would run `task` on (the one under test)."""
        return self.engine.backends.for_task(template_of(task, self.task_type))

    def make(self, task: TaskDefinition[Any, Any], **values: Any) -> TaskAttempt:
        """A first attempt of `task` on `values`, in a fresh execution of its own."""
        execution_id = f"conformance-{secrets.token_hex(4)}"
        node_id, attempt = "n0", 1
        store = self.engine.store
        root = store.uri("executions", execution_id)
        ctx = TransformContext(
            store=store,
            raw_prefix=f"{root}/raw/inputs",
            work_dir=self.engine.work_root / execution_id,
        )
        if set(values) != set(task.interface.inputs):
            raise TypeError(
                f"task {task.short_name} takes inputs {sorted(task.interface.inputs)}, "
                f"got {sorted(values)}"
            )
        converter = default_engine()
        inputs = types_pb2.LiteralMap()
        for name, param in task.interface.inputs.items():
            inputs.literals[name].CopyFrom(converter.to_literal(values[name], param.py_type, ctx))
        inputs_uri = self.engine.literals.put(
            root, f"nodes/{node_id}/inputs.pb", inputs.SerializeToString(deterministic=True)
        )
        attempt_id = f"{execution_id}/{node_id}/{attempt}"
        self._notified[attempt_id] = threading.Event()
        handles = self._handles[attempt_id] = []

        def notify(notified_id: str) -> None:
            # The contract: called with the attempt's own id when its state changed.
            self._notified.get(notified_id, threading.Event()).set()

        return TaskAttempt(
            attempt_id=attempt_id,
            execution_id=execution_id,
            node_id=node_id,
            attempt=attempt,
            task=template_of(task, self.task_type),
            inputs=inputs,
            inputs_uri=inputs_uri,
            outputs_uri=f"{root}/nodes/{node_id}/outputs.pb",
            raw_prefix=f"{root}/nodes/{node_id}/raw/{attempt}",
            notify=notify,
            task_definition=task,
            project="conformance",
            domain="test",
            record_handle=handles.append,
        )

    def handles(self, attempt: TaskAttempt) -> list[str]:
        """The handles the backend recorded for `attempt` (`record_handle`), in order."""
        return list(self._handles[attempt.attempt_id])

    def again(self, attempt: TaskAttempt) -> TaskAttempt:
        """`attempt` as an engine resuming its execution submits it: the same attempt, with
        the last handle recorded for it."""
        recorded = self._handles[attempt.attempt_id]
        return dataclasses.replace(attempt, handle=recorded[-1] if recorded else "")

    def notified(self, attempt: TaskAttempt, timeout: float = 0.0) -> bool:
        """Whether the backend called `attempt.notify(attempt.attempt_id)` (waiting up to
        `timeout` seconds)."""
        return self._notified[attempt.attempt_id].wait(timeout)

    @staticmethod
    def poll_every(backend: Backend[Any]) -> float:
        return min(backend.poll_interval or 0.02, 0.5)

    def wait(self, backend: Backend[Any], attempt: TaskAttempt) -> AttemptStatus:
        """Poll until the attempt ends; fails after the deadline."""
        end = time.monotonic() + self.deadline
        while True:
            status = backend.poll(attempt.attempt_id)
            if status.phase is not AttemptPhase.RUNNING:
                return status
            if time.monotonic() > end:
                raise DeadlineExceededError(
                    f"attempt {attempt.attempt_id} ({attempt.task.id.name}) was still RUNNING "
                    f"after {self.deadline:g}s"
                )
            time.sleep(self.poll_every(backend))

    def outputs(self, attempt: TaskAttempt, status: AttemptStatus) -> Any:
        """The outputs of a succeeded attempt as the task function returned them."""
        outputs = status.outputs
        if outputs is None:
            uri = status.outputs_uri or attempt.outputs_uri
            outputs = types_pb2.LiteralMap()
            outputs.ParseFromString(self.engine.literals.get(uri))
        task: TaskDefinition[Any, Any] = attempt.task_definition
        ctx = TransformContext(
            store=self.engine.store,
            raw_prefix=attempt.raw_prefix,
            work_dir=self.engine.work_root / attempt.execution_id,
        )
        converter = default_engine()
        values = {
            name: converter.to_python(outputs.literals[name], out.py_type, ctx)
            for name, out in task.interface.outputs.items()
        }
        return task.interface.unpack_outputs(values)
