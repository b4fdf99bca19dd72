"""Parameters a task type passes itself (`TaskConfig.context_parameters`): not inputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest
from google.protobuf import message, struct_pb2

from taskfabric import TaskDefinitionError, task, workflow
from taskfabric.plugin_api import TaskConfig


class Session:
    """Stands for an engine's context object (a Flink environment, a session)."""


class WithSession(TaskConfig):
    task_type: ClassVar[str] = "with-session"
    proto_message: ClassVar[type[message.Message] | None] = struct_pb2.Struct

    def context_parameters(self, hints: Mapping[str, Any]) -> list[str]:
        return [name for name, hint in hints.items() if hint is Session]


class Naming(TaskConfig):
    """Names a parameter the function lacks."""

    task_type: ClassVar[str] = "naming"
    proto_message: ClassVar[type[message.Message] | None] = struct_pb2.Struct

    def context_parameters(self, hints: Mapping[str, Any]) -> list[str]:
        return ["nowhere"]


def test_a_context_parameter_is_left_out_of_the_inputs_and_not_bound() -> None:
    @task(config=WithSession())
    def count(session: Session, n: int, label: str = "x") -> str:
        return f"{label}{n}:{type(session).__name__}"

    assert list(count.interface.inputs) == ["n", "label"]
    assert count.interface.context == {"session": Session}
    assert [i.name for i in count.interface.proto.inputs] == ["n", "label"]

    @workflow
    def wf(n: int) -> str:
        return count(n=n)

    (node,) = wf.compile().primary.nodes
    assert sorted(b.var for b in node.inputs) == ["label", "n"]
    # Outside a workflow the task is the plain function: the caller passes the session.
    assert count(Session(), 2) == "x2:Session"


def test_without_the_config_the_parameter_is_an_input_of_an_unsupported_type() -> None:
    with pytest.raises(TaskDefinitionError, match="parameter 'session'"):

        @task
        def count(session: Session, n: int) -> int:
            return n


def test_a_context_parameter_the_function_lacks_is_an_error() -> None:
    with pytest.raises(TaskDefinitionError, match=r"no annotated parameter named \['nowhere'\]"):

        @task(config=Naming())
        def count(n: int) -> int:
            return n
