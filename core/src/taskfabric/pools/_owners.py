"""Which process an owner name stands for, and whether that process is gone.

Engines name themselves ``host:pid`` (``process_owner``) in the leases and waiters they create
(``host:pid/holds`` for the holds of their tasks' code).
An owner on this host whose process no longer exists (or is a zombie nobody reaped) is dead
for sure: its waiters can never take a grant. An owner on another host, or a name of another
form, cannot be checked here and counts as alive; its waiters then leave the queue when their
owner stops keeping them alive.
"""

from __future__ import annotations

import os
import socket

__all__ = ["owner_is_dead", "process_owner"]


def process_owner() -> str:
    """This process's owner name: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """True when ``owner`` is ``host:pid`` (or ``host:pid/role``) of this host and that
    process is gone."""
    host, _, pid = owner.rpartition(":")
    pid = pid.split("/", 1)[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process that nobody has reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
