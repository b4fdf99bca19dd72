"""Tasks and workflows of the Kubernetes integration tests (imported again inside the pods,
from this folder mounted read-only at the same path)."""

from __future__ import annotations

import os
import time

from taskfabric import Directory, File, Resources, map_task, task, workflow


@task
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
def total(parts: Directory) -> int:
    return sum(int(p.read_text()) ** 2 for p in parts)


@workflow
def typed_pipeline(n: int = 5) -> tuple[File, int]:
    numbers = make_file(n=n)
    return numbers, total(parts=split_file(numbers=numbers))


@task(limits=Resources(memory="100Mi"))
def eat_memory(mib: int) -> int:
    hog = bytearray(mib * 1024 * 1024)
    for i in range(0, len(hog), 4096):  # touch every page
        hog[i] = 1
    return len(hog)


@workflow
def memory_hog(mib: int = 600) -> int:
    return eat_memory(mib=mib)


@task
def exit_seven(note: str) -> int:
    print(f"about to exit 7: {note}", flush=True)
    os._exit(7)


@workflow
def dies(note: str = "the disk is full") -> int:
    return exit_seven(note=note)


@task(container_image="localhost/taskfabric-no-such-image:1")
def in_a_missing_image() -> int:
    return 1


@workflow
def missing_image() -> int:
    return in_a_missing_image()


@task
def pause(i: int, seconds: float) -> int:
    time.sleep(seconds)
    return i


@task
def indices(n: int) -> list[int]:
    return list(range(n))


@workflow
def paced_map(n: int = 30, seconds: float = 0.2) -> list[int]:
    return map_task(pause, concurrency=5)(i=indices(n=n), seconds=seconds)


@workflow
def slow(seconds: float = 20.0) -> int:
    return pause(i=7, seconds=seconds)


@task(timeout=3)
def pause_briefly(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@workflow
def slow_with_timeout(seconds: float = 300.0) -> float:
    return pause_briefly(seconds=seconds)


@task
def read_token() -> str:
    return os.environ.get("TF_IT_TOKEN", "<unset>")


@workflow
def secret() -> str:
    return read_token()


@task
def rejected() -> int:
    return 1


@workflow
def invalid_pod() -> int:
    return rejected()


@task
def nowhere() -> int:
    return 1


@workflow
def unschedulable() -> int:
    return nowhere()


@task
def where_am_i() -> str:
    return os.environ.get("TF_IT_CLUSTER", "<unset>")


@workflow
def which_cluster() -> str:
    return where_am_i()


@task(
    backend_options={
        "kubernetes": {
            "pod_template": {"metadata": {"labels": {"taskfabric-it/own": "yes"}}},
            "env": {"TF_IT_CLUSTER": "own"},
        }
    }
)
def with_own_settings() -> str:
    return os.environ.get("TF_IT_CLUSTER", "<unset>")


@workflow
def own_settings() -> str:
    return with_own_settings()
