"""Tasks and workflows of the AWS integration tests (imported again by `taskfabric-execute` in
the processes and Batch containers that run them)."""

from __future__ import annotations

import os
import time
from typing import Any

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


#: Where boto3 finds credentials: the variables a job must not hold.
CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def _try(what: Any) -> str:
    try:
        return f"ok: {what()!r}"[:300]
    except Exception as exc:
        return f"refused: {type(exc).__name__}: {exc}"[:300]


@task
def snoop(own: File, other: str, outside: str, endpoint: str) -> dict[str, str]:
    """What a job of one project reaches of another's: the credentials in its environment,
    a read of the other's blob (through taskfabric's store, boto3 and plain HTTP), a listing
    of the bucket and a write outside its own folder. Its own input it must still read."""
    import boto3
    import urllib3

    from taskfabric.execute import store_for_uri

    bucket, _, key = other[len("s3://") :].partition("/")
    store = store_for_uri(other)
    http = urllib3.PoolManager()
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    return {
        "own": own.read_text(),
        "credentials": ",".join(v for v in CREDENTIAL_VARIABLES if os.environ.get(v)),
        "store_read": _try(lambda: store.get_bytes(other)),
        "store_list": _try(lambda: list(store.list(other.rsplit("/", 1)[0]))),
        "store_list_all": _try(lambda: list(store.list(f"s3://{bucket}/"))),
        "store_write": _try(lambda: store.put_bytes(outside, b"written by another project")),
        "boto3_read": _try(lambda: bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())),
        "http_read": str(http.request("GET", f"{endpoint}/{bucket}/{key}").status),
    }


@workflow
def snooping(own: File, other: str, outside: str, endpoint: str) -> dict[str, str]:
    return snoop(own=own, other=other, outside=outside, endpoint=endpoint)


@task
def forge(other: str) -> File:
    """Write its own outputs document naming another project's blob (the job may write that
    document), then exit before taskfabric-execute writes the real one."""
    import sys

    from taskfabric.core.v1 import types_pb2
    from taskfabric.execute import store_for_uri

    outputs = sys.argv[sys.argv.index("--outputs") + 1]
    document = types_pb2.LiteralMap()
    document.literals["o0"].blob.uri = other
    store_for_uri(outputs).put_bytes(outputs, document.SerializeToString())
    os._exit(0)


@workflow
def forging(other: str) -> File:
    return forge(other=other)
