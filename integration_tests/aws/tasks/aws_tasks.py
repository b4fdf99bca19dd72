"""Tasks and workflows of the AWS integration tests (imported again by `taskfabric-execute` in
the processes and Batch containers that run them)."""

from __future__ import annotations

import os
import time

import pandas as pd

from taskfabric import Directory, File, Resources, map_task, task, workflow


@task(cache=True)
def make_file(n: int) -> File:
    print(f"writing {n} numbers", flush=True)
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


@task
def fail_loudly(reason: str) -> int:
    print(f"about to fail: {reason}", flush=True)
    raise ValueError(f"the task gave up: {reason}")


@workflow
def failing(reason: str = "bad input") -> int:
    return fail_loudly(reason=reason)


@task
def die_without_a_word(code: int) -> int:
    print(f"exiting with {code}, no error document", flush=True)
    os._exit(code)  # as a process killed or out of memory: taskfabric-execute writes nothing


@workflow
def dying(code: int = 3) -> int:
    return die_without_a_word(code=code)


@task
def square(i: int) -> int:
    return i * i


@task
def indices(n: int) -> list[int]:
    return list(range(n))


@workflow
def squares(n: int = 20) -> list[int]:
    return map_task(square)(i=indices(n=n))


@task
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def slow(seconds: float = 600.0) -> float:
    return pause(seconds=seconds)


@task(requests=Resources(cpu="1500m", memory="3Gi"))
def sized(i: int) -> int:
    return i + 1


@task(timeout=5)
def pause_briefly(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def slow_with_timeout(seconds: float = 600.0) -> float:
    return pause_briefly(seconds=seconds)


@workflow
def square_one(i: int = 1) -> int:
    return square(i=i)
