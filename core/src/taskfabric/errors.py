"""Errors that taskfabric raises to its users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class TaskfabricError(Exception):
    """Base class of every error taskfabric raises on purpose."""


@dataclass(frozen=True)
class CompileIssue:
    """One problem found while compiling a workflow."""

    workflow: str
    message: str
    node: str = ""
    input: str = ""
    location: str = ""

    def __str__(self) -> str:
        where = f"workflow '{self.workflow}'"
        if self.node:
            where += f", node '{self.node}'"
        if self.input:
            where += f", input '{self.input}'"
        prefix = f"{self.location}: " if self.location else ""
        return f"{prefix}{where}: {self.message}"


class CompilationError(TaskfabricError):
    """A workflow failed to compile; nothing ran. Carries every issue found."""

    def __init__(self, issues: Sequence[CompileIssue]) -> None:
        self.issues = list(issues)
        count = len(self.issues)
        head = "workflow failed to compile" + (f" ({count} problems)" if count > 1 else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {i}" for i in self.issues))


class TaskDefinitionError(TaskfabricError, TypeError):
    """A @task or @workflow decoration is invalid (e.g. an unsupported type)."""


class ExecutionFailedError(TaskfabricError):
    """A workflow execution ended in a phase other than SUCCEEDED."""

    def __init__(self, execution_id: str, phase: str, message: str) -> None:
        self.execution_id = execution_id
        self.phase = phase
        super().__init__(f"execution {execution_id} {phase.lower()}: {message}")


class ValueTooLargeError(TaskfabricError):
    """A stored inputs or outputs document is larger than a reader takes (the API's
    `[server] max_value_bytes`): it is not read, so no request can make a process hold it."""

    def __init__(self, uri: str, size: int, limit: int, setting: str) -> None:
        self.uri = uri
        self.size = size
        self.limit = limit
        super().__init__(
            f"the stored values are {size} bytes, more than the {limit} bytes the server "
            f"reads for a request ([server] {setting}); a task should return large data as a "
            "File, Directory or DataFrame (stored as blobs, fetched by their own routes)"
        )
