"""Running a script as a child process that does not outlive its task.

The script stays in the process group of the process that runs the attempt, so whatever stops
that process's group stops the script and everything it started: Ctrl-C in a terminal, the
`subprocess` backend cancelling or timing out an attempt, a container runtime. The one case
nobody else handles is a timeout under the in-process `local` backend (an engine thread cannot
be stopped from outside): there the script and its descendants are stopped here, at the task's
timeout. Scripts still running when the Python process exits are stopped too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["ScriptTimeout", "run_script"]

_GRACE_SECONDS = 5.0
_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


class ScriptTimeout(Exception):
    """The script ran past the task's timeout and was stopped."""


def _descendants(pid: int) -> list[int]:
    """Every process below `pid`, from /proc (Linux); empty where there is no /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            found.append(child)
            todo.append(child)
    return found


def _signal(pids: Sequence[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the script and its descendants, then SIGKILL what is left after a grace time."""
    # Listed before any signal: once the shell dies its children are re-parented.
    tree = [proc.pid, *_descendants(proc.pid)]
    _signal(tree, signal.SIGTERM)
    deadline = time.monotonic() + _GRACE_SECONDS
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(_GRACE_SECONDS)
    while time.monotonic() < deadline and any(_alive(pid) for pid in tree[1:]):
        time.sleep(0.05)
    _signal(tree, signal.SIGKILL)
    proc.wait()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped by its new parent) is gone all the same
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


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
    """Run `command` to its end and return its exit code (negative: killed by that signal).

    Raises ScriptTimeout after stopping the script when it runs longer than `timeout`."""
    with stdout.open("wb") as out, stderr.open("wb") as err:
        proc = subprocess.Popen(
            list(command), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
    with _running_lock:
        _running.add(proc)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _stop(proc)
        raise ScriptTimeout(f"the script ran for more than {timeout:g}s and was stopped") from None
    except BaseException:
        _stop(proc)
        raise
    finally:
        with _running_lock:
            _running.discard(proc)
