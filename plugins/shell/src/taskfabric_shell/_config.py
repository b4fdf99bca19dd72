"""`Shell`: the config object of a shell task, `@task(config=Shell(script=...))`."""

from __future__ import annotations

import shlex
from typing import Any, ClassVar

from google.protobuf import message
from pydantic import Field, field_validator

from taskfabric.plugin_api import TaskConfig
from taskfabric.types import py_type_str
from taskfabric_shell import shell_pb2
from taskfabric_shell._template import env_var, parse, placeholders
from taskfabric_shell._values import INPUT_TYPES, OUTPUT_TYPES, input_supported, output_kind

__all__ = ["Shell"]

_OUTPUT_NAMES = "a single return value is o0, a tuple's are o0, o1, ..., a NamedTuple's its fields"


class Shell(TaskConfig):
    """A task whose body is a shell script; the decorated function only gives the interface.

    ```python
    @task(config=Shell(script="wc -l < {inputs.src} > {outputs.o0}"))
    def count_lines(src: File) -> int: ...
    ```

    - `script`: the script; `{inputs.NAME}` is the input's value, shell-quoted (a File or
      Directory is its local path, a list one quoted word per item); `{outputs.NAME}` is a
      path where the script writes the output (the file itself for File/Path outputs, into a
      created empty folder for Directory outputs, the value as text for str/int/float/bool).
      `{{` and `}}` are literal braces. Every value is also in `TF_INPUT_<NAME>` /
      `TF_OUTPUT_<NAME>`.
    - `shell`: the command that runs the script file, split like a shell would
      (`"bash"`, `"bash -euo pipefail"`, `"sh"`, `"python3"`).
    - `env`: environment variables for the script, over the engine's environment.
    - `cwd`: the working folder; default: the attempt's own work folder (relative paths are
      taken from it).
    """

    task_type: ClassVar[str] = "shell"
    proto_message: ClassVar[type[message.Message] | None] = shell_pb2.ShellConfig

    script: str
    shell: str = "bash"
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    @field_validator("script")
    @classmethod
    def _check_script(cls, script: str) -> str:
        if not script.strip():
            raise ValueError("the script is empty")
        parse(script)  # a TemplateError (a ValueError) names the line and the placeholder
        return script

    @field_validator("shell")
    @classmethod
    def _check_shell(cls, shell: str) -> str:
        try:
            words = shlex.split(shell)
        except ValueError as exc:
            raise ValueError(f"cannot split {shell!r} into words: {exc}") from None
        if not words:
            raise ValueError('no shell given: use e.g. "bash" or "sh"')
        return shell

    @field_validator("env")
    @classmethod
    def _check_env(cls, env: dict[str, str]) -> dict[str, str]:
        for key in env:
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"{key!r} is not an environment variable name")
            if key.startswith(("TF_INPUT_", "TF_OUTPUT_")):
                raise ValueError(
                    f"{key}: TF_INPUT_* and TF_OUTPUT_* are set by the shell task type itself"
                )
        return env

    def check_interface(self, interface: Any) -> None:
        """Every placeholder names an input or output of the task, of a type a script can
        use; every output is of a type a script can produce."""
        inputs: dict[str, Any] = interface.inputs
        outputs: dict[str, Any] = interface.outputs
        problems: list[str] = []
        for ph in placeholders(self.script):
            where = f"script line {ph.line}: {ph}"
            if ph.kind == "inputs" and ph.name not in inputs:
                known = ", ".join(inputs) or "none"
                problems.append(f"{where} names no input of the task; its inputs are: {known}")
            elif ph.kind == "inputs" and not input_supported(inputs[ph.name].py_type):
                problems.append(
                    f"{where}: input '{ph.name}' is {py_type_str(inputs[ph.name].py_type)}, "
                    f"which a script cannot take; use {INPUT_TYPES}"
                )
            elif ph.kind == "outputs" and ph.name not in outputs:
                known = ", ".join(outputs) or "none (the function returns None)"
                problems.append(
                    f"{where} names no output of the task; its outputs are: {known} "
                    f"({_OUTPUT_NAMES})"
                )
        for name, out in outputs.items():
            if output_kind(out.py_type) is None:
                problems.append(
                    f"output '{name}' is {py_type_str(out.py_type)}: a shell task's outputs "
                    f"must be {OUTPUT_TYPES}"
                )
        for kind, names in (("inputs", inputs), ("outputs", outputs)):
            seen: dict[str, str] = {}
            for name in names:
                var = env_var(kind, name)
                if var in seen:
                    problems.append(
                        f"{kind} '{seen[var]}' and '{name}' would both be ${var}: rename one"
                    )
                seen[var] = name
        if len(problems) == 1:
            raise ValueError(problems[0])
        if problems:
            raise ValueError("".join(f"\n  - {problem}" for problem in problems))
