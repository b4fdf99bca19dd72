"""Running a script as a child process that cannot outlive its task.

The script runs in its own process group, so a timeout kills everything it started, not only
the shell; scripts still running when the engine's process exits are killed too (an engine
thread running a task cannot be stopped from outside, its child process can).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ScriptTimeout", "run_script"]

_GRACE_SECONDS = 5.0
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


class ScriptTimeout(Exception):
    """The script ran past the task's timeout and was killed."""


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script's process group, then SIGKILL it if it is still there."""
    _kill_group(proc, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_GRACE_SECONDS)
    _kill_group(proc, signal.SIGKILL)
    proc.wait()


@atexit.register
def _stop_all() -> None:
    with _running_lock:
        procs = list(_running)
    for proc in procs:
        _stop(proc)


def run_script(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    stdout: Path,
    stderr: Path,
    timeout: float | None,
) -> int:
    """Run `command` to its end and return its exit code (negative: killed by that signal)."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            list(command),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    with _running_lock:
        _running.add(proc)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ScriptTimeout(f"the script ran for more than {timeout:g} s and was killed") from None
    except BaseException:
        _stop(proc)
        raise
    finally:
        with _running_lock:
            _running.discard(proc)
