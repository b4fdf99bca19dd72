"""The `shell` task type: an attempt renders the script, runs it, reads its outputs back."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from taskfabric.backends import describe_exit
from taskfabric.plugin_api import TaskCall, TaskConfig, TaskType
from taskfabric.types import Format, py_type_str, strip_annotated
from taskfabric_shell._config import Shell
from taskfabric_shell._process import ScriptTimeout, run_script
from taskfabric_shell._template import Placeholder, env_var, parse, render
from taskfabric_shell._values import (
    env_text,
    input_supported,
    output_kind,
    parse_scalar,
    shell_words,
)

__all__ = ["ShellError", "ShellOutputError", "ShellScriptError", "ShellTaskType"]

#: Lines of stderr quoted in the error of a failed script.
TAIL_LINES = 20
_SUFFIX = re.compile(r"[A-Za-z0-9]{1,16}")


class ShellError(Exception):
    """A shell task could not run (no config, shell not found, bad working folder)."""


class ShellScriptError(ShellError):
    """The script exited with a non-zero code, was killed, or timed out."""


class ShellOutputError(ShellError):
    """The script succeeded but an output is missing or cannot be read."""


@dataclass(frozen=True)
class _Output:
    name: str
    py_type: Any
    kind: str  # see output_kind
    path: Path

    def describe(self) -> str:
        return f"output '{self.name}' ({py_type_str(self.py_type)})"


def _tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in deque(fh, maxlen=lines)]


def _logs(attempt_dir: Path) -> str:
    return f"logs in {attempt_dir} (stdout.log, stderr.log)"


def _output_path(out_dir: Path, name: str, py_type: Any, kind: str) -> Path:
    """outputs/<name>, with the declared format as suffix for files (File["csv"] -> o0.csv)."""
    if kind == "file":
        for meta in strip_annotated(py_type)[1]:
            if isinstance(meta, Format) and _SUFFIX.fullmatch(meta.name):
                return out_dir / f"{name}.{meta.name}"
    return out_dir / name


def _timeout_seconds(call: TaskCall) -> float | None:
    timeout = call.template.timeout
    seconds = timeout.seconds + timeout.nanos / 1e9
    return seconds if seconds > 0 else None


class ShellTaskType(TaskType):
    """Runs the task's `Shell` script with bash (or the configured shell) in a child process."""

    name: ClassVar[str] = "shell"
    config_model: ClassVar[type[TaskConfig] | None] = Shell
    default_backend: ClassVar[str] = "local"
    description: ClassVar[str] = "runs a shell script with typed inputs and outputs"

    def run(self, call: TaskCall) -> Any:
        config = call.config
        if not isinstance(config, Shell):
            raise ShellError(
                f"task '{call.task.short_name}' has task type 'shell' but no Shell config: "
                'declare it with @task(config=Shell(script="..."))'
            )
        interface = call.task.interface
        call.work_dir.mkdir(parents=True, exist_ok=True)
        # The attempt's own work folder also holds the type engine's downloads: the script
        # gets a fresh folder inside it.
        attempt_dir = Path(
            tempfile.mkdtemp(prefix=f"shell-{call.task.short_name}-", dir=call.work_dir)
        )
        out_dir = attempt_dir / "outputs"
        out_dir.mkdir()
        outputs: dict[str, _Output] = {}
        for name, spec in interface.outputs.items():
            kind = output_kind(spec.py_type)
            if kind is None:  # check_interface refused this at decoration
                raise ShellError(f"output '{name}' is {py_type_str(spec.py_type)}")
            path = _output_path(out_dir, name, spec.py_type, kind)
            if kind == "directory":
                path.mkdir()
            outputs[name] = _Output(name, spec.py_type, kind, path)

        env = dict(os.environ)
        env.update(config.env)
        for name, value in call.inputs.items():
            if input_supported(interface.inputs[name].py_type):
                env[env_var("inputs", name)] = env_text(value)
        for out in outputs.values():
            env[env_var("outputs", out.name)] = str(out.path)

        def value_of(ph: Placeholder) -> str:
            if ph.kind == "inputs":
                return shell_words(call.inputs[ph.name])
            return shlex.quote(str(outputs[ph.name].path))

        script_file = attempt_dir / "script.sh"
        script_file.write_text(render(parse(config.script), value_of), encoding="utf-8")
        cwd = attempt_dir / config.cwd if config.cwd else attempt_dir
        if not cwd.is_dir():
            raise ShellError(f"cwd {config.cwd!r} is not a folder ({cwd})")
        command = [*shlex.split(config.shell), str(script_file)]
        found = shutil.which(command[0], path=env.get("PATH"))
        if found is None:
            raise ShellError(
                f"shell {command[0]!r} not found on PATH: install it, or pass "
                "Shell(shell=...) a shell that is installed (e.g. 'sh')"
            )
        stdout, stderr = attempt_dir / "stdout.log", attempt_dir / "stderr.log"
        try:
            code = run_script(
                [found, *command[1:]],
                cwd=cwd,
                env=env,
                stdout=stdout,
                stderr=stderr,
                timeout=_timeout_seconds(call),
            )
        except ScriptTimeout as exc:
            raise ShellScriptError(f"{exc}; {_logs(attempt_dir)}") from None
        if code != 0:
            raise ShellScriptError(self._failure(code, config.shell, stdout, stderr))
        values = {name: self._read(out, stdout) for name, out in outputs.items()}
        return interface.unpack_outputs(values)

    @staticmethod
    def _failure(code: int, shell: str, stdout: Path, stderr: Path) -> str:
        what = describe_exit(code)
        lines, stream = _tail(stderr), "stderr"
        if not lines:
            lines, stream = _tail(stdout), "stdout (stderr was empty)"
        quoted = "\n".join(f"  | {line}" for line in lines) if lines else "  (no output)"
        return (
            f"the script ({shell}) {what}; last {len(lines)} lines of {stream}:\n{quoted}\n"
            f"{_logs(stdout.parent)}"
        )

    @staticmethod
    def _read(out: _Output, stdout: Path) -> Any:
        where = f"{{outputs.{out.name}}}, ${env_var('outputs', out.name)}"
        if out.kind == "directory":
            if not out.path.is_dir():
                raise ShellOutputError(
                    f"{out.describe()}: the script removed its folder {out.path} ({where}); "
                    "fill the folder instead"
                )
            return strip_annotated(out.py_type)[0](out.path)
        if not out.path.exists():
            raise ShellOutputError(
                f"the script exited 0 but did not create {out.describe()}: expected a file "
                f"at {out.path} ({where}); {_logs(stdout.parent)}"
            )
        if not out.path.is_file():
            raise ShellOutputError(f"{out.describe()}: {out.path} is not a file")
        if out.kind in ("file", "path"):
            return strip_annotated(out.py_type)[0](out.path)
        text = out.path.read_text(encoding="utf-8", errors="replace")
        try:
            return parse_scalar(text, out.kind)
        except ValueError as exc:
            shown = text if len(text) <= 200 else text[:200] + "..."
            raise ShellOutputError(
                f"{out.describe()}: cannot read {shown!r} (written to {out.path}) as "
                f"{out.kind}: {exc}"
            ) from None
