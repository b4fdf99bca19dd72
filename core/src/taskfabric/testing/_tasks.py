"""The tasks and workflows the conformance suite runs.

They live at module level in an importable module because out-of-process backends
(subprocess, containers, clusters) import a task again by module name and qualname. Every
side channel (markers, counters) is a file under the `scratch` folder given as an input, so a
task running in another process, or on another machine that mounts the folder, finds it.

A task that sleeps checks for `<scratch>/stop` while it does, so the suite's teardown can end
work that a backend could not stop.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from taskfabric.sdk import Retry, task, workflow
from taskfabric.types import File

#: Written by the suite's teardown: sleeping tasks return early (without their end marker).
STOP_FILE = "stop"
#: Seconds a task timing out is declared with; its body sleeps far longer.
TIMEOUT_SECONDS = 1.0


class ConformanceError(Exception):
    """The user exception `fail_with` raises; its class name is the expected error code."""


class FlakyError(Exception):
    """Raised by `flaky` on its first attempt."""


@dataclass
class Record:
    """A record with nested containers and an optional field."""

    name: str
    scores: list[int]
    weights: dict[str, float] = field(default_factory=dict)
    note: str | None = None


def _sleep(scratch: str, seconds: float) -> bool:
    """Sleep `seconds`; False if the suite asked sleeping tasks to stop first."""
    stop = Path(scratch) / STOP_FILE
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if stop.exists():
            return False
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return not stop.exists()


def _touch(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(os.getpid()), encoding="utf-8")


# -- tasks -----------------------------------------------------------------------------------


@task
def add_one(x: int) -> int:
    return x + 1


@task
def module_name() -> str:
    """The name the task's module was imported under, wherever the attempt ran."""
    return __name__


@task
def make_record(name: str, scores: list[int], note: str | None) -> Record:
    total = sum(scores) or 1
    weights = {str(s): s / total for s in scores}
    return Record(name=name, scores=scores, weights=weights, note=note)


@task
def group_scores(record: Record) -> dict[str, list[int]]:
    return {
        "even": [s for s in record.scores if s % 2 == 0],
        "odd": [s for s in record.scores if s % 2 == 1],
    }


@task
def note_of(record: Record) -> str | None:
    return record.note


@task
def first_above(scores: list[int], limit: int | None) -> int | None:
    """The first score above `limit`; None when there is none or no limit."""
    if limit is None:
        return None
    return next((s for s in scores if s > limit), None)


@task
def write_text_file(record: Record) -> File:
    out = File.new("record.txt")
    Path(out.path).write_text(f"{record.name}:{sum(record.scores)}", encoding="utf-8")
    return out


@task
def read_text_file(f: File) -> str:
    return Path(f.path).read_text(encoding="utf-8")


@task
def fail_with(message: str) -> int:
    raise ConformanceError(message)


@task(retries=Retry(retries=1, backoff=0.05))
def flaky(scratch: str, x: int) -> int:
    """Fails on its first attempt (no marker yet), succeeds on the next."""
    marker = Path(scratch) / "flaky.marker"
    if not marker.exists():
        _touch(marker)
        raise FlakyError("first attempt fails on purpose")
    return x * 10


@task(timeout=TIMEOUT_SECONDS)
def sleep_past_timeout(scratch: str, seconds: float) -> int:
    _touch(Path(scratch) / "timeout.started")
    if _sleep(scratch, seconds):
        _touch(Path(scratch) / "timeout.finished")
    return 1


@task
def sleep_then_mark(scratch: str, name: str, seconds: float) -> int:
    """Marks `<name>.started`, sleeps, then marks `<name>.finished` (unless stopped)."""
    _touch(Path(scratch) / f"{name}.started")
    if _sleep(scratch, seconds):
        _touch(Path(scratch) / f"{name}.finished")
    return 1


@task
def count_run(scratch: str) -> int:
    """Appends a line per run of its body to `<scratch>/runs.txt`; returns the count."""
    runs = Path(scratch) / "runs.txt"
    runs.parent.mkdir(parents=True, exist_ok=True)
    with runs.open("a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    return len(runs.read_text(encoding="utf-8").splitlines())


@task
def run_when_told(scratch: str, name: str) -> int:
    """Appends a line per run of its body to `<name>.runs`, marks `<name>.started`, waits for
    `<name>.go`, marks `<name>.finished` and returns the number of runs. Stopped by the suite's
    stop file, it returns 0 without the end marker."""
    folder = Path(scratch)
    runs = folder / f"{name}.runs"
    with runs.open("a", encoding="utf-8") as fh:
        fh.write(f"{os.getpid()}\n")
    _touch(folder / f"{name}.started")
    while not (folder / f"{name}.go").exists():
        if (folder / STOP_FILE).exists():
            return 0
        time.sleep(0.02)
    _touch(folder / f"{name}.finished")
    return len(runs.read_text(encoding="utf-8").splitlines())


@task
def rendezvous(scratch: str, me: str, peer: str, wait_seconds: float) -> str:
    """Arrives, then waits for `peer` to arrive: passes only if both run at the same time."""
    _touch(Path(scratch) / f"{me}.arrived")
    peer_file = Path(scratch) / f"{peer}.arrived"
    end = time.monotonic() + wait_seconds
    while not peer_file.exists():
        if time.monotonic() > end or (Path(scratch) / STOP_FILE).exists():
            raise TimeoutError(
                f"'{me}' waited {wait_seconds:g}s for '{peer}' to start: the two attempts "
                "did not run at the same time"
            )
        time.sleep(0.02)
    return me


# -- workflows -------------------------------------------------------------------------------


@workflow
def plus_one(x: int) -> int:
    return add_one(x=x)


@workflow
def rich_types(
    name: str, scores: list[int], note: str | None, limit: int | None
) -> tuple[Record, dict[str, list[int]], str | None, int | None, int | None, str]:
    record = make_record(name=name, scores=scores, note=note)
    return (
        record,
        group_scores(record=record),
        note_of(record=record),
        first_above(scores=scores, limit=limit),  # None in, None out
        first_above(scores=scores, limit=2),
        read_text_file(f=write_text_file(record=record)),
    )


@workflow
def failing(message: str) -> int:
    return fail_with(message=message)


@workflow
def retried(scratch: str, x: int) -> int:
    return flaky(scratch=scratch, x=x)


@workflow
def timing_out(scratch: str, seconds: float) -> int:
    return sleep_past_timeout(scratch=scratch, seconds=seconds)


@workflow
def side_by_side(scratch: str, wait_seconds: float) -> tuple[str, str]:
    return (
        rendezvous(scratch=scratch, me="left", peer="right", wait_seconds=wait_seconds),
        rendezvous(scratch=scratch, me="right", peer="left", wait_seconds=wait_seconds),
    )
