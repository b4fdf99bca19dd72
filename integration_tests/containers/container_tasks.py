"""Tasks and workflows of the containers integration tests (imported again inside the
containers, from the read-only snapshot of this folder's `.py` files)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pandas as pd

from taskfabric import Directory, File, Resources, map_task, task, workflow


@task
def make_file(n: int) -> File:
    out = File.new("numbers.txt")
    out.path.write_text("\n".join(str(i) for i in range(n)) + "\n")
    return out


@task
def split_file(numbers: File) -> Directory:
    folder = Directory.new("parts")
    for i, line in enumerate(numbers.read_text().splitlines()):
        (folder.path / f"part-{i}.txt").write_text(line)
    return folder


@task
def to_frame(parts: Directory) -> pd.DataFrame:
    values = sorted(int(p.read_text()) for p in parts)
    return pd.DataFrame({"n": values, "square": [v * v for v in values]})


@task
def total(frame: pd.DataFrame) -> int:
    return int(frame["square"].sum())


@workflow
def typed_pipeline(n: int = 5) -> tuple[File, Directory, int]:
    numbers = make_file(n=n)
    parts = split_file(numbers=numbers)
    return numbers, parts, total(frame=to_frame(parts=parts))


@task(resources=Resources(memory="64Mi"))
def eat_memory(mib: int) -> int:
    hog = bytearray(mib * 1024 * 1024)
    for i in range(0, len(hog), 4096):  # touch every page
        hog[i] = 1
    return len(hog)


@workflow
def memory_hog(mib: int = 400) -> int:
    return eat_memory(mib=mib)


@task
def fail_loudly(reason: str) -> int:
    print(f"about to fail: {reason}", flush=True)
    raise ValueError(f"the task gave up: {reason}")


@workflow
def failing(reason: str = "bad input") -> int:
    return fail_loudly(reason=reason)


@task
def look_around(paths: list[str]) -> list[str]:
    """What of `paths` this container can see: 'PATH: readable' or 'PATH: absent'."""
    seen = []
    for path in paths:
        try:
            Path(path).read_bytes()
            seen.append(f"{path}: readable")
        except FileNotFoundError:
            seen.append(f"{path}: absent")
        except OSError as exc:
            seen.append(f"{path}: {type(exc).__name__}")
    env = [k for k in os.environ if k.startswith("TASKFABRIC")]
    seen.append("env: " + ",".join(sorted(env)))
    return seen


@workflow
def snoop(paths: list[str]) -> list[str]:
    return look_around(paths=paths)


@task
def pause(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


@task
def indices(n: int) -> list[int]:
    return list(range(n))


@workflow
def paced_map(n: int = 20, seconds: float = 1.0) -> list[int]:
    return map_task(pause, concurrency=4)(i=indices(n=n), seconds=seconds)


@workflow
def slow(seconds: float = 10.0) -> int:
    return pause(i=7, seconds=seconds)


@task(timeout=3)
def pause_briefly(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def slow_with_timeout(seconds: float = 120.0) -> float:
    return pause_briefly(seconds=seconds)


@task
def held_calls(n: int) -> list[int]:
    """Holds a slot of pool `api` around each call, through the engine's pool channel."""
    import taskfabric

    done = []
    for i in range(n):
        with taskfabric.hold("api", timeout=120):
            done.append(i)
    return done


@workflow
def holding(n: int = 3) -> list[int]:
    return held_calls(n=n)


@task(backend_options={"podman": {"env": {"GREETING": "hello from the task"}, "network": "host"}})
def own_settings() -> list[str]:
    """Its own variable, and the network interfaces its container has."""
    return [os.environ.get("GREETING", "unset"), *sorted(os.listdir("/sys/class/net"))]


@workflow
def task_settings() -> list[str]:
    return own_settings()
