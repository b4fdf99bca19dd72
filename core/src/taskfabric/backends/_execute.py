"""Run one attempt of a task in this process: literals in, literals out.

Used by the in-process `local` backend and by the `taskfabric-execute` entrypoint that every
out-of-process backend (subprocess, containers, Spark, AWS Batch) runs.
"""

from __future__ import annotations

import os
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskfabric.core.v1 import tasks_pb2, types_pb2
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    TaskCall,
    TaskType,
)
from taskfabric.sdk._hold import bind_attempt, bind_attempt_in_context
from taskfabric.storage import BlobStore
from taskfabric.types import TransformContext, default_engine

_ENGINE_FILES = (str(Path(__file__).resolve().parent.parent) + os.sep,)


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` without taskfabric's own frames."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_ENGINE_FILES)
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(exc)
    return "".join(lines)


def _failed(error: AttemptError) -> AttemptStatus:
    return AttemptStatus(AttemptPhase.FAILED, error=error)


def execute_task(
    task_def: Any,
    template: tasks_pb2.TaskTemplate,
    task_type: TaskType,
    inputs: types_pb2.LiteralMap,
    *,
    store: BlobStore,
    raw_prefix: str,
    work_dir: Path,
    write_outputs: Callable[[bytes], str],
    attempt_id: str = "",
    cancelled: threading.Event | None = None,
    attempt_context: bool = False,
) -> AttemptStatus:
    """Convert inputs, run the task through its task type, convert and store outputs.

    The outputs are stored (by `write_outputs`, which returns their URI) before this
    returns SUCCEEDED, so the engine never records a success whose outputs are missing.
    With `attempt_context`, the caller runs this in a context made for the attempt
    (`contextvars.copy_context().run`): the attempt id is bound in it, not around the call.
    """
    engine = default_engine()
    ctx = TransformContext(store=store, raw_prefix=raw_prefix, work_dir=work_dir)
    interface = task_def.interface
    literals = inputs.literals
    kwargs: dict[str, Any] = {}
    for name, param in interface.inputs.items():
        if name not in literals:
            return _failed(
                AttemptError(
                    "MissingInput",
                    f"input '{name}' was not provided",
                    kind="system",
                    retryable=False,
                )
            )
        try:
            kwargs[name] = engine.to_python(literals[name], param.py_type, ctx)
        except Exception as exc:
            return _failed(
                AttemptError(
                    type(exc).__name__,
                    f"cannot read input '{name}': {exc}",
                    kind="system",
                    retryable=True,
                    traceback=traceback.format_exc(),
                )
            )
    try:
        config = task_type.config_of(template)
    except Exception as exc:
        return _failed(
            AttemptError(
                "InvalidTaskConfig",
                f"task config does not load: {exc}",
                kind="system",
                retryable=False,
            )
        )
    try:
        call = TaskCall(
            task=task_def,
            template=template,
            config=config,
            inputs=kwargs,
            work_dir=work_dir,
            attempt_id=attempt_id,
            cancelled=cancelled if cancelled is not None else threading.Event(),
        )
        if attempt_id and not attempt_context:
            with bind_attempt(attempt_id):
                result = task_type.run(call)
        else:
            if attempt_id:  # (the caller's context ends with the attempt)
                bind_attempt_in_context(attempt_id)
            result = task_type.run(call)
    except SystemExit as exc:
        # `sys.exit()` in a task ends the task, not the thread or process that runs it (on
        # the local backend that thread is the engine's: it would never report the attempt).
        return _failed(
            AttemptError(
                "SystemExit",
                f"task '{task_def.short_name}' called sys.exit({exc.code!r}) instead of "
                "returning or raising",
                kind="user",
                retryable=True,
                traceback=user_traceback(exc),
            )
        )
    except Exception as exc:
        # An exception may say its message is the whole story (a task type's error about
        # the user's script, say): then no traceback of the plugin's own code is shown.
        tb = user_traceback(exc) if getattr(exc, "show_traceback", True) else ""
        return _failed(
            AttemptError(
                type(exc).__name__,
                str(exc) or type(exc).__name__,
                kind="user",
                retryable=True,
                traceback=tb,
            )
        )
    try:
        values = interface.pack_outputs(result)
        out = types_pb2.LiteralMap()
        for name, value in values.items():
            spec = interface.outputs[name]
            try:
                out.literals[name].CopyFrom(engine.to_literal(value, spec.py_type, ctx))
            except Exception as exc:
                raise TypeError(f"output '{name}': {exc}") from exc
    except Exception as exc:
        return _failed(
            AttemptError(
                "OutputTypeError",
                f"task '{task_def.short_name}' returned a value that does not fit its declared "
                f"outputs: {exc}",
                kind="user",
                retryable=False,
            )
        )
    try:
        outputs_uri = write_outputs(out.SerializeToString(deterministic=True))
    except Exception as exc:
        return _failed(
            AttemptError(
                type(exc).__name__, f"cannot store outputs: {exc}", kind="system", retryable=True
            )
        )
    return AttemptStatus(AttemptPhase.SUCCEEDED, outputs=out, outputs_uri=outputs_uri)
