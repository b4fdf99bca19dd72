"""What the engine asks of a backend: submit, poll and cancel task attempts.

This is the engine's side of the contract; the public plugin API builds on it.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2


class AttemptPhase(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass
class AttemptSpec:
    """One attempt of one task node, as handed to a backend."""

    attempt_id: str
    execution_id: str
    node_id: str
    attempt: int
    task: tasks_pb2.TaskTemplate
    inputs: types_pb2.LiteralMap
    inputs_uri: str
    outputs_uri: str
    raw_prefix: str
    # Called (from any thread) with attempt_id when the attempt's state changed.
    notify: Callable[[str], None]
    # The loaded task object, for backends that run Python in this process.
    task_definition: Any = None


@dataclass
class AttemptStatus:
    phase: AttemptPhase
    outputs: types_pb2.LiteralMap | None = None
    outputs_uri: str = ""
    error: execution_pb2.ExecutionError | None = None
    message: str = ""
    log_links: list[dict[str, str]] = field(default_factory=list)


RUNNING = AttemptStatus(AttemptPhase.RUNNING)


class Backend(abc.ABC):
    """Runs task attempts somewhere and reports how they end."""

    name: str = ""
    #: Seconds between polls of running attempts; None if the backend calls notify.
    poll_interval: float | None = None

    @abc.abstractmethod
    def submit(self, spec: AttemptSpec) -> None:
        """Start the attempt. Submitting the same attempt_id again must not start it twice."""

    @abc.abstractmethod
    def poll(self, attempt_id: str) -> AttemptStatus:
        """The attempt's current state."""

    @abc.abstractmethod
    def cancel(self, attempt_id: str) -> None:
        """Stop the attempt if it is running; no error if it already ended."""

    def release(self, attempt_id: str) -> None:  # noqa: B027 - optional hook
        """The engine has recorded the attempt's end; forget it."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the backend's resources at the end of the engine's life."""
