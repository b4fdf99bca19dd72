"""Run one attempt of a Python task in this process: literals in, literals out."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskfabric.core.v1 import execution_pb2, types_pb2
from taskfabric.engine._backend import AttemptPhase, AttemptStatus
from taskfabric.storage import BlobStore
from taskfabric.types import TransformContext, default_engine

_USER = execution_pb2.ErrorKind.ERROR_KIND_USER
_SYSTEM = execution_pb2.ErrorKind.ERROR_KIND_SYSTEM
_ENGINE_FILES = (str(Path(__file__).resolve().parent.parent),)


def user_traceback(exc: BaseException) -> str:
    """The traceback of `exc` without taskfabric's own frames."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_ENGINE_FILES)
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(exc)
    return "".join(lines)


def error(
    kind: execution_pb2.ErrorKind.ValueType,
    code: str,
    message: str,
    *,
    retryable: bool,
    tb: str = "",
) -> execution_pb2.ExecutionError:
    return execution_pb2.ExecutionError(
        kind=kind,
        code=code,
        message=message,
        retryable=retryable,
        traceback=tb,
    )


def execute_task(
    task_def: Any,
    inputs: types_pb2.LiteralMap,
    *,
    store: BlobStore,
    raw_prefix: str,
    work_dir: Path,
    write_outputs: Callable[[bytes], str],
) -> AttemptStatus:
    """Convert inputs, call the function, convert and store outputs.

    The outputs are stored (by `write_outputs`, which returns their URI) before this
    returns SUCCEEDED, so the engine never records a success whose outputs are missing.
    """
    engine = default_engine()
    ctx = TransformContext(store=store, raw_prefix=raw_prefix, work_dir=work_dir)
    interface = task_def.interface
    kwargs: dict[str, Any] = {}
    for name, param in interface.inputs.items():
        if name not in inputs.literals:
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=error(
                    _SYSTEM, "MissingInput", f"input '{name}' was not provided", retryable=False
                ),
            )
        try:
            kwargs[name] = engine.to_python(inputs.literals[name], param.py_type, ctx)
        except Exception as exc:
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=error(
                    _SYSTEM,
                    type(exc).__name__,
                    f"cannot read input '{name}': {exc}",
                    retryable=True,
                    tb=traceback.format_exc(),
                ),
            )
    try:
        result = task_def.function(**kwargs)
    except Exception as exc:
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=error(
                _USER,
                type(exc).__name__,
                str(exc) or type(exc).__name__,
                retryable=True,
                tb=user_traceback(exc),
            ),
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
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=error(
                _USER,
                "OutputTypeError",
                f"task '{task_def.short_name}' returned a value that does not fit "
                f"its declared outputs: {exc}",
                retryable=False,
            ),
        )
    try:
        outputs_uri = write_outputs(out.SerializeToString(deterministic=True))
    except Exception as exc:
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=error(
                _SYSTEM, type(exc).__name__, f"cannot store outputs: {exc}", retryable=True
            ),
        )
    return AttemptStatus(AttemptPhase.SUCCEEDED, outputs=out, outputs_uri=outputs_uri)
