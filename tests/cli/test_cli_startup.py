"""Start-up of the `taskfabric` command: `--help` imports no command's module, no database
layer, no server code, no SDK and no plugin system; each command is imported when it runs.
Checked by what is imported (deterministic), not by a time; bench/ measures the time."""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys

import click
import pytest

from taskfabric.cli import BUILTIN, cli

_PROBE = """
import contextlib, io, json, sys
from taskfabric.cli import cli
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        cli(sys.argv[1:], prog_name="taskfabric")
    except SystemExit:
        pass
print(json.dumps({"help": out.getvalue(), "modules": sorted(sys.modules)}))
"""


def _imported(*args: str) -> tuple[str, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={"COLUMNS": "100", "PATH": "/usr/bin:/bin"},
    )
    found = json.loads(proc.stdout.strip().splitlines()[-1])
    return found["help"], set(found["modules"])


def test_help_lists_every_command_and_imports_none_of_them() -> None:
    text, modules = _imported("--help")
    for name in BUILTIN:
        assert f"  {name} " in text, name
    loaded = {module for module, _, _ in BUILTIN.values()} & modules
    assert not loaded, f"--help imported command modules: {sorted(loaded)}"
    heavy = (
        "sqlalchemy",
        "taskfabric.server",
        "taskfabric.engine",
        "fastapi",
        "docker",
        # Nor the SDK, the plugin system or the libraries under them: plugins' commands are
        # listed from their entry points (tests/plugins/test_commands.py).
        "taskfabric.sdk",
        "taskfabric.plugins",
        "taskfabric.config",
        "pydantic",
        "google.protobuf",
        "pluggy",
        "structlog",
        "rich",
        "httpx",
    )
    for name in heavy:
        assert name not in modules, f"--help imported {name}"


def test_a_command_imports_its_own_module_only() -> None:
    text, modules = _imported("executions", "list", "--help")
    assert "Usage: taskfabric executions list" in text
    assert "taskfabric.cli._executions" in modules
    assert "taskfabric.cli._server" not in modules and "taskfabric.server" not in modules


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    module, attribute, paragraph = BUILTIN[name]
    command = getattr(importlib.import_module(module), attribute)
    assert isinstance(command, click.Command) and command.name == name
    own = inspect.cleandoc(command.help or "").split("\n\n")[0]
    assert " ".join(own.split()) == paragraph, f"update BUILTIN[{name!r}] in taskfabric/cli"
    assert cli.get_command(click.Context(cli), name) is command
