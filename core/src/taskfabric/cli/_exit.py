"""Leaving the `taskfabric` command without the interpreter's teardown.

Once a command is done, Python's own exit frees every module and object one by one: 0.1-0.2 s
of a `taskfabric run` (more under load), for nothing. `exit_now` does first what that exit
does which matters to anyone (waits for the threads that are not daemons, runs the `atexit`
handlers: the engine closed, temporary files removed, the user's own handlers; flushes every
open file's buffers), then ends the process with `os._exit`.
"""

from __future__ import annotations

import atexit
import gc
import io
import os
import sys
import threading
from typing import NoReturn


def _status(code: str | int | None) -> int:
    """What `sys.exit(code)` would exit with (a message printed to stderr for a text)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


#: the file objects that buffer writes (exact types: a test of the type alone keeps the scan
#: of every object a few milliseconds; a subclass of them is rare)
_BUFFERED = frozenset({io.BufferedWriter, io.BufferedRandom, io.TextIOWrapper})


def _flush_open_files() -> None:
    """Every open file's Python-side buffer to the OS (the teardown would flush those it
    frees: a file a task left open in a global, for one)."""
    for obj in gc.get_objects():
        if type(obj) in _BUFFERED:
            try:
                if not obj.closed:
                    obj.flush()
            except (OSError, ValueError):
                pass  # a closed pipe, a detached wrapper: nothing to keep


def exit_now(code: str | int | None) -> NoReturn:
    """Exit with `code` (as `sys.exit` takes it), skipping the interpreter's teardown. Where
    Python lacks the private `threading._shutdown` (the exit's own wait for threads and
    their executors' shutdown), exits the usual way instead."""
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is None:
        sys.exit(code)
    status = _status(code)
    shutdown()
    atexit._run_exitfuncs()
    _flush_open_files()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, AttributeError):
            status = status or 120  # what Python exits with when it cannot flush stdout
    os._exit(status)
