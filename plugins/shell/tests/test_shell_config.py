"""`Shell`: validation, its protobuf form, and the interface check at @task decoration."""

from __future__ import annotations

from typing import NamedTuple

import pytest
from google.protobuf import any_pb2
from pydantic import ValidationError

from taskfabric import Directory, File, TaskDefinitionError, task
from taskfabric_shell import Shell, shell_pb2


def test_defaults_and_proto_round_trip() -> None:
    config = Shell(script="echo {inputs.x}", env={"A": "1"}, cwd="sub")
    assert (config.shell, config.env, config.cwd) == ("bash", {"A": "1"}, "sub")
    msg = config.to_proto()
    assert isinstance(msg, shell_pb2.ShellConfig)
    assert (msg.script, msg.shell, dict(msg.env), msg.cwd) == (
        "echo {inputs.x}",
        "bash",
        {"A": "1"},
        "sub",
    )
    packed = any_pb2.Any()
    packed.Pack(msg)
    assert Shell.from_any(packed) == config
    assert Shell.from_any(packed).cwd == "sub"


def test_no_cwd_stays_unset_through_the_proto() -> None:
    config = Shell(script="true")
    msg = config.to_proto()
    assert isinstance(msg, shell_pb2.ShellConfig)
    assert not msg.HasField("cwd")
    assert Shell.from_proto(msg) == config


def test_the_task_template_carries_the_config() -> None:
    @task(config=Shell(script="echo hi > {outputs.o0}", shell="sh"))
    def hello() -> str: ...

    template = hello.template()
    assert template.type == "shell"
    unpacked = shell_pb2.ShellConfig()
    assert template.config.Unpack(unpacked)
    assert unpacked.shell == "sh"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"script": "  \n"}, "the script is empty"),
        ({"script": "echo ${HOME}"}, "unknown placeholder {HOME}"),
        ({"script": "true", "shell": ""}, "no shell given"),
        ({"script": "true", "shell": "bash 'unclosed"}, "cannot split"),
        ({"script": "true", "env": {"A=B": "x"}}, "not an environment variable name"),
        ({"script": "true", "env": {"TF_INPUT_X": "x"}}, "set by the shell task type"),
    ],
)
def test_invalid_configs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message.replace("{", r"\{").replace("}", r"\}")):
        Shell(**kwargs)  # type: ignore[arg-type]


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="timeout"):
        Shell.model_validate({"script": "true", "timeout": 3})


def test_placeholder_naming_an_unknown_input() -> None:
    with pytest.raises(TaskDefinitionError) as info:

        @task(config=Shell(script="wc -l < {inputs.source} > {outputs.o0}"))
        def count_lines(src: File, limit: int) -> int: ...

    text = str(info.value)
    assert "test_shell_config.py:" in text  # where the task is
    assert "count_lines" in text
    assert "{inputs.source}" in text
    assert "its inputs are: src, limit" in text


class Stats(NamedTuple):
    lines: int
    words: int


def test_placeholder_naming_an_unknown_output() -> None:
    with pytest.raises(TaskDefinitionError) as info:

        @task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
        def stats(src: File) -> Stats: ...

    text = str(info.value)
    assert "{outputs.o0} names no output" in text
    assert "its outputs are: lines, words" in text


def test_a_task_returning_none_has_no_outputs() -> None:
    with pytest.raises(TaskDefinitionError, match="its outputs are: none"):

        @task(config=Shell(script="echo > {outputs.o0}"))
        def nothing() -> None: ...


def test_outputs_of_unsupported_types_are_refused_even_unnamed() -> None:
    with pytest.raises(TaskDefinitionError) as info:

        @task(config=Shell(script="echo hi"))
        def counts() -> dict[str, int]: ...

    assert "output 'o0' is dict[str, int]" in str(info.value)
    assert "File, Directory, pathlib.Path, str, int, float or bool" in str(info.value)


def test_placeholder_of_an_input_a_script_cannot_take() -> None:
    with pytest.raises(TaskDefinitionError, match=r"input 'table' is dict\[str, int\]"):

        @task(config=Shell(script="echo {inputs.table}"))
        def show(table: dict[str, int]) -> None: ...


def test_unsupported_inputs_not_named_in_the_script_are_allowed() -> None:
    @task(config=Shell(script="echo {inputs.n}"))
    def ordered(n: int, after: dict[str, int]) -> None: ...

    assert ordered.task_type == "shell"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(TaskDefinitionError) as info:

        @task(config=Shell(script="cp {inputs.a} {outputs.b}\ncat {inputs.c}"))
        def copy(src: File) -> File: ...

    text = str(info.value)
    assert "script line 1: {inputs.a}" in text
    assert "script line 1: {outputs.b}" in text
    assert "script line 2: {inputs.c}" in text


def test_names_that_clash_as_env_vars() -> None:
    with pytest.raises(TaskDefinitionError, match=r"'x' and 'X' would both be \$TF_INPUT_X"):

        @task(config=Shell(script="echo {inputs.x}"))
        def clash(x: int, X: int) -> None: ...


def test_a_fitting_task_decorates() -> None:
    @task(config=Shell(script="cp {inputs.src} {outputs.o0}; ls {inputs.more} > {outputs.o1}"))
    def fits(src: File, more: list[File]) -> tuple[File, Directory]: ...

    assert fits.task_type == "shell"
