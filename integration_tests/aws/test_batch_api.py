"""The aws-batch backend against moto's Batch API with no containers (moto ends each job at
once, SUCCEEDED, and runs nothing): job definitions, names and tags, re-attach by tag,
describe_jobs in batches of 100, throttling turned into pool pushback, clear errors. The jobs
that really run are in test_batch_jobs.py."""

from __future__ import annotations

import dataclasses
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aws_tasks
import pytest
from conftest import client
from throttling import throttling_proxy

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import (
    BACKENDS_GROUP,
    STORAGE_GROUP,
    AttemptPhase,
    BackendContext,
)
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.storage import PackStore
from taskfabric.testing import DirectAttempts
from taskfabric_aws import BatchBackend, BatchSettings, S3BlobStore
from taskfabric_aws._batch import PENDING, TAG_ATTEMPT, attempt_key, job_name_of
from taskfabric_aws.testing import configure_moto, create_batch_queue

QUEUE = "tf-api"


@pytest.fixture(scope="session")
def queue(moto_endpoint: str) -> str:
    configure_moto(moto_endpoint, {"batch": {"use_docker": False}})
    create_batch_queue(moto_endpoint, QUEUE)
    return QUEUE


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(STORAGE_GROUP, "s3", S3BlobStore)
    plugins.add_driver(BACKENDS_GROUP, "aws-batch", BatchBackend)
    with use_plugins(plugins):
        yield plugins


def batch_config(folder: Path, s3_root: str, endpoint: str, queue: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taskfabric.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{s3_root}"
            options = {{ endpoint_url = "{endpoint}" }}

            [metadata]
            url = "sqlite:///{folder / "meta.db"}"

            [task_types]
            python = "batch"

            [backends.batch]
            driver = "aws-batch"
            job_queue = "{queue}"
            image = "localhost/taskfabric-never-run:1"
            endpoint_url = "{endpoint}"
            poll_seconds = 0.2
            """)
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def engine(
    tmp_path: Path,
    s3_root: str,
    moto_endpoint: str,
    queue: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Engine]:
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    config = load_config(batch_config(tmp_path / "home", s3_root, moto_endpoint, queue))
    with Engine(config, plugins=plugins) as engine:
        yield engine


def jobs_named(endpoint: str, name: str) -> list[dict[str, Any]]:
    batch = client("batch", endpoint)
    found = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": [name]}])
    ids = [s["jobId"] for s in found["jobSummaryList"]]
    return batch.describe_jobs(jobs=ids)["jobs"] if ids else []


def test_a_job_per_attempt_named_and_tagged_one_definition_per_task_version(
    engine: Engine, moto_endpoint: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    backend = direct.backend(aws_tasks.sized)
    first, second = direct.make(aws_tasks.sized, i=1), direct.make(aws_tasks.sized, i=2)
    backend.submit(first)
    backend.submit(second)
    backend.submit(first)  # again: still one job
    statuses = [direct.wait(backend, a) for a in (first, second)]
    # moto ran nothing: the job "succeeded" without the outputs taskfabric-execute writes.
    for status, attempt in zip(statuses, (first, second), strict=True):
        assert status.phase is AttemptPhase.FAILED
        assert status.error is not None and status.error.code == "BatchJobFailed"
        assert "succeeded without writing its outputs" in status.error.message
        assert direct.notified(attempt)
    jobs = {
        a.attempt_id: jobs_named(moto_endpoint, job_name_of(a.attempt_id)) for a in (first, second)
    }
    assert all(len(found) == 1 for found in jobs.values()), jobs
    job = jobs[first.attempt_id][0]
    assert job["tags"][TAG_ATTEMPT] == attempt_key(first.attempt_id)
    assert job["jobName"] == job_name_of(first.attempt_id)
    assert job["jobName"].startswith("tf-conformance-")
    # The provisional handle (the name) before the submit, then the job's id.
    assert direct.handles(first) == [PENDING + job["jobName"], job["jobId"]]
    command = job["container"]["command"]
    assert command[:3] == ["python3", "-m", "taskfabric.execute"]
    assert command[command.index("--outputs") + 1] == first.outputs_uri
    # One job definition for both attempts: the task's resources, no Batch retry strategy.
    definitions = {j[0]["jobDefinition"] for j in jobs.values()}
    assert len(definitions) == 1
    name = definitions.pop().split("/")[-1].split(":")[0]
    found = client("batch", moto_endpoint).describe_job_definitions(jobDefinitionName=name)
    (definition,) = found["jobDefinitions"]
    assert name.startswith("tf-aws_tasks-sized-")
    resources = {
        r["type"]: r["value"] for r in definition["containerProperties"]["resourceRequirements"]
    }
    assert resources == {"VCPU": "2", "MEMORY": "3072"}  # 1500m rounds up to whole vCPUs
    assert not definition.get("retryStrategy")
    assert definition["containerProperties"]["image"] == "localhost/taskfabric-never-run:1"


def test_resubmitted_attempts_reattach_by_tag_never_a_second_job(
    engine: Engine, moto_endpoint: str, s3_root: str, tmp_path: Path, plugins: Plugins, queue: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    backend = direct.backend(aws_tasks.square)
    attempt = direct.make(aws_tasks.square, i=3)
    backend.submit(attempt)
    direct.wait(backend, attempt)
    (job,) = jobs_named(moto_endpoint, job_name_of(attempt.attempt_id))
    # A second engine process (the first killed -9) submits the same attempt: with the job id
    # recorded, or only the provisional handle (killed between submit_job and recording the
    # id): it adopts the job, found by name and tag.
    config = load_config(batch_config(tmp_path / "second", s3_root, moto_endpoint, queue))
    with Engine(config, plugins=plugins) as second:
        again = DirectAttempts(second, task_type="python", deadline=60)
        for handle, recorded_after in (
            (job["jobId"], []),
            (PENDING + job["jobName"], [job["jobId"]]),
        ):
            other = again.backend(aws_tasks.square)
            recorded: list[str] = []
            resubmitted = dataclasses.replace(attempt, handle=handle, record_handle=recorded.append)
            other.submit(resubmitted)
            status = again.wait(other, resubmitted)
            assert status.error is not None and job["jobId"] in status.error.message
            assert recorded == recorded_after
            assert [j["jobId"] for j in jobs_named(moto_endpoint, job["jobName"])] == [job["jobId"]]
            other.release(attempt.attempt_id)
        # Killed after recording the provisional handle, before submitting: one job now.
        fresh = direct.make(aws_tasks.square, i=5)
        name = job_name_of(fresh.attempt_id)
        recorded = []
        other = again.backend(aws_tasks.square)
        pending = dataclasses.replace(fresh, handle=PENDING + name, record_handle=recorded.append)
        other.submit(pending)
        again.wait(other, pending)
        (created,) = jobs_named(moto_endpoint, name)
        assert recorded == [PENDING + name, created["jobId"]]


def _context(engine: Engine, pushbacks: list[Mapping[str, float]]) -> BackendContext:
    return BackendContext(
        store=engine.store,
        literals=PackStore(engine.store),
        data_root=engine.config.data_root,
        work_root=engine.work_root,
        parallelism=4,
        core_version="test",
        pushback=pushbacks.append,
    )


def test_describe_jobs_asks_about_100_jobs_per_call(engine: Engine, moto_endpoint: str) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=120)
    settings = BatchSettings(
        job_queue=QUEUE,
        image="localhost/x:1",
        endpoint_url=moto_endpoint,
        poll_seconds=0.2,
        pool="batch-api",
    )
    # Every Batch call first takes a token of the pool: held until all 101 attempts are
    # submitted, so the thread's next round finds them all, whatever the threads' speeds.
    go = threading.Event()

    def take_tokens(weights: Mapping[str, int]) -> float:
        assert dict(weights) == {"batch-api": 1}
        go.wait()
        return 0.0

    context = dataclasses.replace(_context(engine, []), take_tokens=take_tokens)
    backend = BatchBackend("batch", settings, context)
    sizes: list[int] = []
    backend.batch.meta.events.register(
        "provide-client-params.batch.DescribeJobs",
        lambda params, **_: sizes.append(len(params["jobs"])),
    )
    try:
        attempts = [direct.make(aws_tasks.square, i=i) for i in range(101)]
        for attempt in attempts:
            backend.submit(attempt)
        go.set()
        for attempt in attempts:
            assert direct.wait(backend, attempt).phase is AttemptPhase.FAILED
    finally:
        go.set()
        backend.close()
    # The round that met the held token described the jobs it had seen (one, or more); the
    # next found every other one submitted: one call asks about several live jobs, never more
    # than 100, and every job was described.
    assert 1 < max(sizes) <= 100, sizes
    assert sum(sizes) >= 101


def test_throttling_pushes_the_pool_back_and_fails_nothing(
    engine: Engine, moto_endpoint: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=120)
    pushbacks: list[Mapping[str, float]] = []
    with throttling_proxy(moto_endpoint, throttle=3, path="/v1/describejobs") as proxy:
        settings = BatchSettings(
            job_queue=QUEUE,
            image="localhost/x:1",
            endpoint_url=proxy.endpoint,
            poll_seconds=0.1,
            pool="batch-api",
            api_attempts=1,
        )
        backend = BatchBackend("batch", settings, _context(engine, pushbacks))
        try:
            attempt = direct.make(aws_tasks.square, i=4)
            backend.submit(attempt)
            status = direct.wait(backend, attempt)
        finally:
            backend.close()
    # Three throttled describe_jobs calls, each a pushback of the pool; the attempt ended as
    # the job did (moto ran nothing), not on a throttling error.
    assert proxy.seen[:4] == ["POST"] * 4
    assert [list(p) for p in pushbacks] == [["batch-api"]] * 3
    assert [p["batch-api"] for p in pushbacks] == [1.0, 2.0, 4.0]
    assert status.error is not None and status.error.code == "BatchJobFailed"


def test_a_local_blob_store_is_refused_with_the_fix(tmp_path: Path, engine: Engine) -> None:
    from taskfabric.storage import LocalBlobStore

    store = LocalBlobStore(tmp_path / "blobs")
    context = BackendContext(
        store=store,
        literals=PackStore(store),
        data_root=tmp_path,
        work_root=tmp_path / "work",
        parallelism=1,
        core_version="test",
    )
    with pytest.raises(ValueError, match=r'data_root = "s3://bucket/prefix"'):
        BatchBackend("batch", BatchSettings(job_queue=QUEUE), context)


def test_an_unknown_queue_fails_the_attempt_naming_it(engine: Engine, moto_endpoint: str) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    settings = BatchSettings(
        job_queue="no-such-queue", image="localhost/x:1", endpoint_url=moto_endpoint
    )
    backend = BatchBackend("batch", settings, _context(engine, []))
    try:
        check = backend.check()
        assert not check.ok and "no-such-queue" in check.message
        attempt = direct.make(aws_tasks.square, i=1)
        backend.submit(attempt)
        status = direct.wait(backend, attempt)
    finally:
        backend.close()
    assert status.error is not None and status.error.code == "SubmitFailed"
    assert "queue 'no-such-queue'" in status.error.message


def test_check_reports_the_queue_and_its_compute_environment(
    engine: Engine, moto_endpoint: str
) -> None:
    backend = BatchBackend(
        "batch", BatchSettings(job_queue=QUEUE, endpoint_url=moto_endpoint), _context(engine, [])
    )
    try:
        check = backend.check()
    finally:
        backend.close()
    assert check.ok, check.message
    assert f"job queue '{QUEUE}' is enabled" in check.message
    assert f"{QUEUE}-ce" in check.message
