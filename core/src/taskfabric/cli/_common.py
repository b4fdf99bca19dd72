"""Shared pieces of the command line: config, console, error reporting."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.text import Text

from taskfabric.cli._state import CliState
from taskfabric.config import ConfigError
from taskfabric.errors import TaskfabricError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_ABORTED = 130


# Piped output is not cut at 80 columns: it is read by people with wide windows and tools.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def labelled(label: str, message: str, style: str = "bold red") -> Text:
    """`label: message` with the label styled and the message verbatim (no markup, so
    `list[int]` and `[backends.x]` in messages survive)."""
    return Text.assemble((f"{label}:", style), " ", message)


def state() -> CliState:
    return click.get_current_context().find_object(CliState)  # type: ignore[return-value]


def fail(message: str, code: int = EXIT_FAILED) -> None:
    err.print(labelled("error", message), highlight=False)
    sys.exit(code)


@contextmanager
def user_errors() -> Iterator[None]:
    """Turn taskfabric's own errors into a clean message and exit code."""
    try:
        yield
    except ConfigError as exc:
        err.print(labelled("config error", str(exc)), highlight=False)
        sys.exit(EXIT_USAGE)
    except TaskfabricError as exc:
        err.print(labelled("error", str(exc)), highlight=False)
        sys.exit(EXIT_USAGE)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM stops a run like Ctrl-C does: running nodes are cancelled and recorded."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def elapsed(
    started_at: float | None, finished_at: float | None, phase: str, now: float | None = None
) -> float | None:
    """How long an execution or node ran: to its end, or to now while it is RUNNING."""
    if started_at is None:
        return None
    if finished_at is not None:
        return finished_at - started_at
    if phase == "RUNNING":
        return max(0.0, (time.time() if now is None else now) - started_at)
    return None


def fmt_age(at: float | None) -> str:
    if at is None:
        return "-"
    return fmt_duration(max(0.0, time.time() - at)) + " ago"


def fmt_time(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


PHASE_STYLE = {
    "SUCCEEDED": "green",
    "RUNNING": "cyan",
    "QUEUED": "dim",
    "RETRYING": "yellow",
    "FAILED": "bold red",
    "TIMED_OUT": "bold red",
    "ABORTED": "magenta",
    "SKIPPED": "dim",
    "NOT STARTED": "dim",
}


def phase_text(phase: str) -> str:
    style = PHASE_STYLE.get(phase, "")
    return f"[{style}]{phase}[/]" if style else phase
