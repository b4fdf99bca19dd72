"""Who runs an execution: the owner id of this process, and whether an owner is alive."""

from __future__ import annotations

import os
import secrets
import socket


def new_execution_id() -> str:
    return secrets.token_hex(6)


def this_owner() -> str:
    """The owner id of this process: `host:pid`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str) -> bool:
    """Whether `owner` is a process of this host that no longer runs (False when unsure)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:  # a killed process that nobody has reaped yet is a zombie: dead all the same
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
