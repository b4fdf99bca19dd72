"""docs/plugins/writing.md, followed from an empty folder in a fresh virtual environment.

The guide's walk-throughs (parts 1 and 3) are executable:

- a fenced block whose first line is `# <path>` (`// <path>` in a .proto; a path outside this
  repository's plugins/, protos/, core/ and docs/) is a file of the walk-through: it is written
  to that path, in order;
- a ```console block is run, in order: each `$ command` runs in bash in the walk-through's folder
  with the virtual environment first on PATH; the lines after it are expected in its output
  (whitespace-insensitive, `...` skips), and it must exit 0 unless one of them starts with
  `error:`.

The virtual environment is a real, empty one (no system site-packages) with the core installed
from this working tree, never from a registry; its other dependencies come from the package
index. The guide's commands then install the plugins it builds, run workflows with them, test them
(the backend against the core's conformance suite), and uninstall one.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GUIDE = REPO / "docs" / "plugins" / "writing.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_HEADER = re.compile(r"^(?:#|//) (\S+)$")  # `//` in a .proto
REPOSITORY_PATHS = ("plugins/", "protos/", "core/", "docs/")
COMMAND_TIMEOUT = 900.0


@dataclass(frozen=True)
class Command:
    line: str
    expected: tuple[str, ...]

    @property
    def should_fail(self) -> bool:
        return any(e.startswith("error:") for e in self.expected)


@dataclass(frozen=True)
class Step:
    path: str = ""  # a file to write
    body: str = ""
    commands: tuple[Command, ...] = ()  # or commands to run


def guide_steps() -> list[Step]:
    steps = []
    for match in FENCE.finditer(GUIDE.read_text(encoding="utf-8")):
        language, body = match.group(1), match.group(2)
        if language == "console":
            steps.append(Step(commands=tuple(_commands(body))))
            continue
        header = FILE_HEADER.match(body.split("\n", 1)[0])
        if header and not header.group(1).startswith(REPOSITORY_PATHS):
            steps.append(Step(path=header.group(1), body=body))
    return steps


def _commands(body: str) -> list[Command]:
    found: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            found.append((line[2:], []))
        elif line.strip() and line.strip() != "...":
            assert found, f"output before any command in a console block:\n{body}"
            found[-1][1].append(line)
    return [Command(line, tuple(expected)) for line, expected in found]


def _squeeze(text: str) -> str:
    return " ".join(text.split())


class Walkthrough:
    """A folder and a fresh virtual environment in which to follow the guide."""

    def __init__(self, root: Path) -> None:
        self.folder = root / "walkthrough"
        self.folder.mkdir()
        self.venv = root / "venv"
        self.timings: list[tuple[str, float]] = []
        env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKFABRIC_", "PYTHON"))}
        env.pop("VIRTUAL_ENV", None)
        env.update(
            VIRTUAL_ENV=str(self.venv),
            PATH=f"{self.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
            # Nothing read from or written to the user's config and data folders.
            TASKFABRIC_DATA_ROOT=str(root / "data"),
            XDG_CONFIG_HOME=str(root / "xdg-config"),
            XDG_DATA_HOME=str(root / "xdg-data"),
            XDG_CACHE_HOME=str(root / "xdg-cache"),
            PYTHONDONTWRITEBYTECODE="1",
        )
        self.env = env

    def run(self, line: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        proc = subprocess.run(
            ["bash", "-c", line],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        self.timings.append((line, time.monotonic() - started))
        return proc

    def create(self) -> None:
        """`python -m venv` (no system site-packages) and the core from this working tree."""
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True)
        self.timings.append(("python -m venv", time.monotonic() - started))
        self.expect_success(f"pip install -e {REPO / 'core'}")

    def expect_success(self, line: str) -> str:
        proc = self.run(line)
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"`{line}` exited {proc.returncode}:\n{output}"
        return output

    def follow(self, command: Command) -> str:
        proc = self.run(command.line)
        output = proc.stdout + proc.stderr
        where = f"the guide's `$ {command.line}` exited {proc.returncode}:\n{output}"
        if command.should_fail:
            assert proc.returncode != 0, where
        else:
            assert proc.returncode == 0, where
        lines = [_squeeze(line) for line in output.splitlines()]
        for expected in command.expected:
            assert any(_squeeze(expected) in line for line in lines), (
                f"the guide shows {expected!r} after `$ {command.line}`; it printed:\n{output}"
            )
        return output


@pytest.mark.slow
def test_the_guide_from_an_empty_folder(tmp_path: Path) -> None:
    steps = guide_steps()
    files = [s.path for s in steps if s.path]
    commands = [c.line for s in steps for c in s.commands]
    # The walk-throughs are there: a task type and a backend, built, used, tested, removed.
    assert "taskfabric-upper/pyproject.toml" in files
    assert "taskfabric-nice/pyproject.toml" in files
    assert "pip install -e ./taskfabric-upper" in commands
    assert "pip uninstall -y taskfabric-upper" in commands

    guide = Walkthrough(tmp_path)
    guide.create()
    outputs = []
    for step in steps:
        if step.path:
            target = guide.folder / step.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(step.body, encoding="utf-8")
        for command in step.commands:
            outputs.append((command.line, guide.follow(command)))
    ran = dict(outputs)

    # What the guide promises, checked whatever its text says.
    assert 'o0 = "HELLO PLUGINS"' in ran['taskfabric run shout.py:loud --text "hello plugins"']
    assert "unknown task type 'upper'" in ran["taskfabric run shout.py:loud"]
    assert "o0 = 15" in ran["taskfabric run niceness.py:how_nice"]
    assert " passed" in ran["python -m pytest -q taskfabric-nice/tests"]

    # A plugin made for another core is refused, and named where it is needed.
    pyproject = guide.folder / "taskfabric-upper" / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('"taskfabric>=0.1,<0.2"', '"taskfabric>=0.2,<0.3"')
    )
    guide.expect_success("pip install --no-deps -e ./taskfabric-upper")
    listed = _squeeze(guide.expect_success("taskfabric plugins list"))
    assert "supports taskfabric <0.3,>=0.2, but taskfabric 0.1.0 is installed" in listed
    proc = guide.run("taskfabric run shout.py:loud")
    refused = _squeeze(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "unknown task type 'upper'" in refused
    assert "plugins that failed to load: taskfabric-upper" in refused

    report = "\n".join(f"{seconds:6.1f}s  {line}" for line, seconds in guide.timings)
    print(f"\nfollowing {GUIDE.relative_to(REPO)}:\n{report}")
