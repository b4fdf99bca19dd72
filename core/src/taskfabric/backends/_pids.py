"""Telling one process apart from every other, across engine processes (Linux `/proc`).

A pid alone is not an identity: the kernel hands a freed pid to the next process. A pid plus
the moment its process started (`/proc/PID/stat` field 22, in clock ticks since boot) plus the
boot it started in (`/proc/sys/kernel/random/boot_id`) is. `ProcessBackend` records that
identity as an attempt's handle, and re-attaches to the process by it after an engine restart.

The identity is also written by the process itself, before it runs the attempt's command, to
a pid file in the attempt's work folder (`wrap`): an engine killed between starting the
process and recording its handle has recorded a provisional handle (`STARTING`) before it
started it, and the next engine finds the process through that file.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import select
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "STARTING_PREFIX",
    "ProcessIdentity",
    "boot_id",
    "check_executable",
    "read_pid_file",
    "starting_handle",
    "wrap",
]

#: Provisional handles start with this: recorded before the process starts.
STARTING_PREFIX = "process-starting:"
_HANDLE = re.compile(r"process:(?P<boot>[^:]*):(?P<pid>\d+):(?P<start>\d+)")

# The wrapper the attempt's process starts as: it writes "<pid> <start ticks> <boot id>" to
# the pid file ($1), then becomes the command (exec keeps the pid, the start time and the
# process group). `${s##*) }` drops "pid (comm) " from the stat line, whatever comm holds.
_WRAPPER = (
    "p=$1; shift; s=; b=; "
    "{ read -r s </proc/self/stat; read -r b </proc/sys/kernel/random/boot_id; } 2>/dev/null; "
    'w() { printf "%s %s %s\\n" "$$" "${20:-0}" "$b" >"$p"; }; '
    "set -f; w ${s##*) }; set +f; "
    'exec "$@"'
)


@functools.cache
def boot_id() -> str:
    """This machine's current boot id, or '' where the kernel does not tell it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of a live pid, from /proc; None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):  # ENOENT, or ESRCH when it exits while being read
        return None
    fields = text.rsplit(")", 1)[-1].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


@dataclass(frozen=True)
class ProcessIdentity:
    """One process: its pid, when it started (clock ticks since boot) and in which boot."""

    pid: int
    start: int
    boot: str

    @classmethod
    def of(cls, pid: int) -> ProcessIdentity | None:
        """The identity of the live process `pid`, or None."""
        stat = _stat(pid)
        return None if stat is None else cls(pid, stat[1], boot_id())

    @property
    def handle(self) -> str:
        """The handle string: `process:<boot id>:<pid>:<start ticks>`."""
        return f"process:{self.boot}:{self.pid}:{self.start}"

    @classmethod
    def parse(cls, handle: str) -> ProcessIdentity | None:
        """The identity a `handle` string names, or None when it names none."""
        match = _HANDLE.fullmatch(handle.strip())
        if match is None:
            return None
        return cls(int(match["pid"]), int(match["start"]), match["boot"])

    def running(self) -> bool:
        """Whether this very process still runs (not ended, not a zombie, pid not reused)."""
        if self.boot != boot_id():
            return False
        stat = _stat(self.pid)
        return stat is not None and stat[1] == self.start and stat[0] not in ("Z", "X", "x")

    def wait_gone(self) -> None:
        """Block until the process no longer runs. It need not be a child of this process:
        waits on a pidfd where the kernel has them, else checks /proc every 0.1 s."""
        fd = -1
        with contextlib.suppress(OSError, AttributeError):
            fd = os.pidfd_open(self.pid)
        try:
            # Opened first, checked second: the pidfd cannot refer to a later process.
            if not self.running():
                return
            if fd >= 0:
                poller = select.poll()
                poller.register(fd, select.POLLIN)
                while not poller.poll(1000):
                    if not self.running():  # a zombie nobody reaps is gone too
                        return
                return
            gone = threading.Event()
            while self.running():
                gone.wait(0.1)
        finally:
            if fd >= 0:
                os.close(fd)


def starting_handle() -> str:
    """The provisional handle recorded just before a process starts."""
    return f"{STARTING_PREFIX}{boot_id()}"


def wrap(command: Sequence[str], pid_file: Path) -> list[str]:
    """`command` started through the wrapper that writes its identity to `pid_file`."""
    return ["/bin/sh", "-c", _WRAPPER, "taskfabric-attempt", str(pid_file), *command]


def read_pid_file(path: Path) -> ProcessIdentity | None:
    """The identity a process wrote to its pid file (see `wrap`), or None."""
    try:
        pid, start, *rest = path.read_text().split()
        return ProcessIdentity(int(pid), int(start), rest[0] if rest else "")
    except (OSError, ValueError):
        return None


def check_executable(program: str, env: Mapping[str, str]) -> None:
    """Raise FileNotFoundError, as starting it would, when `program` cannot be run.

    The wrapper starts first, so a missing program would otherwise show only as exit 127."""
    if shutil.which(program, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
