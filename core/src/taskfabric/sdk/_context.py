"""The compile context: what a workflow function's body builds while it runs once."""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import workflow_pb2
from taskfabric.errors import CompileIssue

if TYPE_CHECKING:
    from taskfabric.sdk._conditional import ConditionBuilder

_SDK_DIR = str(Path(__file__).resolve().parent.parent)


def caller_location() -> workflow_pb2.SourceLocation:
    """The first stack frame outside the taskfabric package: the user's line."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_SDK_DIR):
        frame = frame.f_back
    if frame is None:
        return workflow_pb2.SourceLocation()
    return workflow_pb2.SourceLocation(file=frame.f_code.co_filename, line=frame.f_lineno)


def location_text(loc: workflow_pb2.SourceLocation) -> str:
    from taskfabric.sdk._interface import location_str

    return location_str(loc.file, loc.line) if loc.file else ""


@dataclass
class CompileContext:
    """Collects nodes, referenced tasks and sub-workflows, and problems."""

    workflow_name: str
    nodes: list[workflow_pb2.Node] = field(default_factory=list)
    tasks: dict[str, Any] = field(default_factory=dict)  # template key -> TaskDefinition
    subworkflows: dict[str, Any] = field(default_factory=dict)  # name -> WorkflowDefinition
    issues: list[CompileIssue] = field(default_factory=list)
    branch: ConditionBuilder | None = None
    _counter: int = 0

    def next_node_id(self) -> str:
        node_id = f"n{self._counter}"
        self._counter += 1
        return node_id

    def add_node(self, node: workflow_pb2.Node) -> None:
        if self.branch is not None:
            self.branch.capture(node, self)
        else:
            self.nodes.append(node)

    def issue(self, message: str, *, node: str = "", input: str = "", location: str = "") -> None:
        self.issues.append(
            CompileIssue(self.workflow_name, message, node=node, input=input, location=location)
        )


_current: contextvars.ContextVar[CompileContext | None] = contextvars.ContextVar(
    "taskfabric_compile_context", default=None
)


def current_context() -> CompileContext | None:
    return _current.get()


@contextmanager
def compiling(ctx: CompileContext) -> Iterator[CompileContext]:
    token = _current.set(ctx)
    try:
        yield ctx
    finally:
        _current.reset(token)
