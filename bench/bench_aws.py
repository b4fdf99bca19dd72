"""AWS benchmark: the `s3` blob store against the local one, and a task on `aws-batch` against a
bare Batch job of the same image, all on moto's server (127.0.0.1).

    python bench/bench_aws.py                 # the store figures (S1-S3)
    python bench/bench_aws.py --batch         # and the Batch figures (B0, B1): needs podman

- S1: `put_file` then `get_file` of a 64 MiB file (parts of 8 MiB, 4 at a time), MiB/s of each,
  with the peak Python memory of the transfer (tracemalloc): bounded by the parts in flight,
  not by the file.
- S2: `put_bytes` + `get_bytes` of 500 small documents (1 KiB), ms per document.
- S3: the same on the local blob store, for scale (moto keeps objects in memory and answers
  over HTTP on this machine: the S3 figures measure the client's work plus one local HTTP
  round trip per call, not AWS's latency).
- B0: a bare Batch job of the jobs' image running `python3 -c "import taskfabric.execute"`,
  submitted and followed with `describe_jobs` until it ends.
- B1: a one-task workflow on the aws-batch backend (S3 data root): the engine records the
  execution, registers the job definition (once), uploads the task template, submits the job,
  which runs `taskfabric-execute` (reads the inputs from S3, writes the outputs there), follows
  it with `describe_jobs`, reads its CloudWatch log and the outputs back.

Medians of `--repeat` runs; the ratio to read is B1 / B0. moto advances a job through its
states with half-second sleeps, which both B0 and B1 pay. Needs taskfabric-aws[testing] (and
taskfabric-containers, podman for --batch).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3

from taskfabric.storage import BlobStore, LocalBlobStore
from taskfabric_aws import S3BlobStore
from taskfabric_aws.testing import FAKE_CREDENTIALS, create_batch_queue, moto_server

REPO = Path(__file__).resolve().parents[1]
TASKS = REPO / "integration_tests" / "aws" / "tasks"
BUCKET = "taskfabric-bench"
MIB = 1 << 20


def s3_client(service: str, endpoint: str) -> Any:
    return boto3.client(service, endpoint_url=endpoint)


def transfer(store: BlobStore, folder: Path, size: int) -> tuple[float, float, int]:
    """MiB/s of put_file and get_file of a `size`-byte file, and the peak traced memory."""
    source = folder / "big.bin"
    with source.open("wb") as fh:
        for _ in range(size // MIB):
            fh.write(os.urandom(MIB))
    uri = store.uri("bench", uuid.uuid4().hex)
    tracemalloc.start()
    started = time.perf_counter()
    store.put_file(source, uri)
    put = time.perf_counter() - started
    started = time.perf_counter()
    store.get_file(uri, folder / "copy.bin")
    get = time.perf_counter() - started
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    store.delete(uri)
    return size / MIB / put, size / MIB / get, peak


def documents(store: BlobStore, count: int) -> float:
    """ms per small document written and read back."""
    payload = os.urandom(1024)
    prefix = uuid.uuid4().hex
    started = time.perf_counter()
    for i in range(count):
        uri = store.uri("docs", prefix, f"{i}.pb")
        store.put_bytes(uri, payload)
        store.get_bytes(uri)
    return (time.perf_counter() - started) * 1000 / count


def store_figures(endpoint: str, repeat: int) -> None:
    s3_client("s3", endpoint).create_bucket(Bucket=BUCKET)
    with tempfile.TemporaryDirectory(prefix="bench-aws-") as tmp:
        root = Path(tmp)
        s3 = S3BlobStore.from_root(f"s3://{BUCKET}/bench", {"endpoint_url": endpoint})
        local = LocalBlobStore(root / "blobs")
        for name, store in (("s3", s3), ("local", local)):
            runs = [transfer(store, root, 64 * MIB) for _ in range(repeat)]
            put = statistics.median(r[0] for r in runs)
            get = statistics.median(r[1] for r in runs)
            peak = max(r[2] for r in runs)
            docs = statistics.median(documents(store, 500) for _ in range(repeat))
            print(
                f"S1/S3 {name:5}  64 MiB put {put:7.1f} MiB/s  get {get:7.1f} MiB/s  "
                f"peak memory {peak / MIB:5.1f} MiB   S2 small documents {docs:6.2f} ms each"
            )


@contextlib.contextmanager
def batch_world(root: Path) -> Iterator[tuple[str, str]]:
    """A podman service, the jobs' image, and a moto server whose Batch runs containers."""
    sys.path.insert(0, str(REPO / "integration_tests" / "aws"))
    # The integration tests' image spec, queue and bucket.
    from test_batch_jobs import BUCKET as JOBS_BUCKET
    from test_batch_jobs import QUEUE, TASK_IMAGE

    from taskfabric_containers import build_image
    from taskfabric_containers._client import ContainerApi
    from taskfabric_containers.testing import podman_service

    with podman_service(root / "podman") as url:
        api = ContainerApi(url, timeout=1800)
        image = build_image(TASK_IMAGE, api, print).ref
        api.close()
        env = {"DOCKER_HOST": url, "MOTO_DOCKER_NETWORK_MODE": "host"}
        with moto_server(root / "moto", env=env) as endpoint:
            create_batch_queue(endpoint, QUEUE)
            s3_client("s3", endpoint).create_bucket(Bucket=JOBS_BUCKET)
            yield endpoint, image


def bare_job(endpoint: str, image: str, queue: str, definition: list[str]) -> float:
    batch = s3_client("batch", endpoint)
    if not definition:
        definition.append(
            batch.register_job_definition(
                jobDefinitionName="bench-bare",
                type="container",
                containerProperties={
                    "image": image,
                    "command": ["python3", "-c", "import taskfabric.execute"],
                    "resourceRequirements": [
                        {"type": "VCPU", "value": "1"},
                        {"type": "MEMORY", "value": "512"},
                    ],
                },
            )["jobDefinitionArn"]
        )
    started = time.perf_counter()
    job = batch.submit_job(jobName="bench-bare", jobQueue=queue, jobDefinition=definition[0])
    while True:
        (found,) = batch.describe_jobs(jobs=[job["jobId"]])["jobs"]
        if found["status"] in ("SUCCEEDED", "FAILED"):
            assert found["status"] == "SUCCEEDED", found
            return time.perf_counter() - started
        time.sleep(0.1)


def batch_figures(repeat: int) -> None:
    from taskfabric.config import load_config
    from taskfabric.engine import Engine

    sys.path.insert(0, str(TASKS))
    import aws_tasks

    with tempfile.TemporaryDirectory(prefix="bench-aws-batch-") as tmp:
        root = Path(tmp)
        with batch_world(root) as (endpoint, image):
            from test_batch_jobs import QUEUE, write_config

            config = load_config(write_config(root / "home", endpoint, image))
            definition: list[str] = []
            bare = [bare_job(endpoint, image, QUEUE, definition) for _ in range(repeat)]
            with Engine(config) as engine:
                engine.launch(aws_tasks.square_one, {"i": 0})  # registers the job definition
                runs = []
                for i in range(repeat):
                    started = time.perf_counter()
                    result = engine.launch(aws_tasks.square_one, {"i": i + 1})
                    runs.append(time.perf_counter() - started)
                    assert result.phase == "SUCCEEDED", result.error
    b0, b1 = statistics.median(bare), statistics.median(runs)
    print(f"B0 bare Batch job        {b0 * 1000:7.0f} ms   1.00x")
    extra = f"(+{(b1 - b0) * 1000:.0f} ms)"
    print(f"B1 no-op task, aws-batch {b1 * 1000:7.0f} ms   {b1 / b0:.2f}x   {extra}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch", action="store_true", help="also the Batch figures (podman)")
    args = parser.parse_args()
    os.environ.update(FAKE_CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="bench-moto-") as tmp, moto_server(Path(tmp)) as ep:
        store_figures(ep, args.repeat)
    sys.stdout.flush()
    if args.batch:
        batch_figures(args.repeat)


if __name__ == "__main__":
    main()
