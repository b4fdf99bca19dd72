"""Small pieces the execution loop shares: events, outcomes, errors, document keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from taskfabric.core.v1 import execution_pb2, types_pb2

_SYSTEM = execution_pb2.ErrorKind.ERROR_KIND_SYSTEM


class CancelRequested(Exception):
    """Someone asked (from another process, through the database) to cancel the execution."""


class EngineShutdown(BaseException):
    """The engine process is being stopped (server shutdown): leave the execution to be
    resumed instead of aborting it. Raised from a signal handler into the loop thread."""


@dataclass
class RunOutcome:
    phase: str
    outputs: types_pb2.LiteralMap | None
    error: dict[str, Any] | None


def node_key(full_id: str, name: str) -> str:
    """Where a node's documents live under its execution: `nodes/n1/3/outputs.pb`."""
    return f"nodes/{full_id.replace('[', '/').replace(']', '')}/{name}"


def error_dict(err: execution_pb2.ExecutionError, node_id: str = "") -> dict[str, Any]:
    d: dict[str, Any] = {
        "kind": execution_pb2.ErrorKind.Name(err.kind).removeprefix("ERROR_KIND_").lower(),
        "code": err.code,
        "message": err.message,
    }
    if node_id or err.node_id:
        d["node_id"] = node_id or err.node_id
    if err.traceback:
        d["traceback"] = err.traceback
    return d


def user_error(code: str, message: str) -> execution_pb2.ExecutionError:
    """The task's own doing: running it again would not help."""
    return execution_pb2.ExecutionError(
        kind=execution_pb2.ErrorKind.ERROR_KIND_USER, code=code, message=message
    )


def system_error(
    code: str, message: str, *, retryable: bool = False
) -> execution_pb2.ExecutionError:
    return execution_pb2.ExecutionError(
        kind=_SYSTEM, code=code, message=message, retryable=retryable
    )
