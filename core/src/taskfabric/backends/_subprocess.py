"""The built-in `subprocess` backend: each attempt in a fresh Python process.

The process runs `python -m taskfabric.execute`, the same entrypoint that containers, Spark
and AWS Batch jobs run. A task that segfaults, calls `os._exit` or eats all its memory fails
its attempt and nothing else; a timeout or an abort kills the whole process group.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from taskfabric.backends._process import ProcessBackend
from taskfabric.plugin_api import BackendContext, BackendSettings, CheckResult, TaskAttempt


class SubprocessSettings(BackendSettings):
    """`[backends.<name>]` of driver `subprocess`."""

    #: Interpreter that runs the attempts; default: the engine's own.
    python: str = ""
    #: Extra environment variables for the task processes.
    env: dict[str, str] = {}
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = 5.0


class SubprocessBackend(ProcessBackend[SubprocessSettings]):
    """Runs each attempt as `python -m taskfabric.execute` in its own process group."""

    driver = "subprocess"
    settings_model = SubprocessSettings

    def __init__(self, name: str, settings: SubprocessSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.python = settings.python or sys.executable

    def command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        return [
            self.python,
            "-m",
            "taskfabric.execute",
            *self.execute_args(attempt, template_uri, work_dir),
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(self.settings.env)
        return env

    def check(self) -> CheckResult:
        try:
            out = subprocess.run(
                [
                    self.python,
                    "-c",
                    "import taskfabric.execute, sys; print(sys.version.split()[0])",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return CheckResult(False, f"cannot run {self.python}: {exc}")
        if out.returncode != 0:
            return CheckResult(
                False,
                f"{self.python} cannot import taskfabric: {out.stderr.strip().splitlines()[-1:]}",
            )
        return CheckResult(True, f"{self.python} (Python {out.stdout.strip()}) runs taskfabric")
