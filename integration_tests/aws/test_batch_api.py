"""The aws-batch backend against moto's Batch API with no containers (moto ends each job at
once, SUCCEEDED, and runs nothing): job definitions, names and tags, re-attach by tag,
describe_jobs in batches of 100, throttling turned into pool pushback, clear errors. The jobs
that really run are in test_batch_jobs.py."""

from __future__ import annotations

import dataclasses
import json
import textwrap
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import aws_tasks
import pytest
import urllib3
from conftest import client
from throttling import throttling_proxy

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.errors import TaskfabricError
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
from taskfabric_aws._arrays import array_key, array_name_of, child_id
from taskfabric_aws._batch import PENDING, TAG_ARRAY, TAG_ATTEMPT, attempt_key, job_name_of
from taskfabric_aws._s3 import GRANTS_ENV
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
    with throttling_proxy(moto_endpoint, throttle=2, path="/v1/describejobs") as proxy:
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
    # Two throttled describe_jobs calls, each a pushback of the pool, twice as long as the
    # last; the attempt ended as the job did (moto ran nothing), not on a throttling error.
    assert proxy.seen[:3] == ["POST"] * 3
    assert [list(p) for p in pushbacks] == [["batch-api"]] * 2
    assert [p["batch-api"] for p in pushbacks] == [1.0, 2.0]
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
    assert "fix job_queue in [backends.batch]" in status.error.message, status.error.message


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


def _count_submits(backend: Any) -> list[dict[str, Any]]:
    """The parameters of every SubmitJob call `backend` makes from now on."""
    calls: list[dict[str, Any]] = []
    backend.submitter.meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **_: calls.append(dict(params))
    )
    return calls


def test_map_items_go_as_one_array_job_each_child_an_item(
    engine: Engine, moto_endpoint: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    backend = direct.backend(aws_tasks.square)
    submits = _count_submits(backend)
    items = [direct.make(aws_tasks.square, i=i) for i in range(5)]
    backend.submit_map_items(items)
    backend.submit_map_items(items)  # again: nothing new
    statuses = [direct.wait(backend, a) for a in items]
    (call,) = submits
    assert call["arrayProperties"] == {"size": 5}
    name = call["jobName"]
    assert name == array_name_of(items) and name.endswith(
        array_key([a.attempt_id for a in items])[:12]
    )
    # In moto's Batch the array job and its children share the name: one array, 5 children.
    jobs = jobs_named(moto_endpoint, name)
    (array,) = [j for j in jobs if ":" not in j["jobId"]]
    assert array["tags"][TAG_ARRAY] == array_key([a.attempt_id for a in items])
    assert array["arrayProperties"]["size"] == 5
    assert sorted(j["jobId"] for j in jobs if ":" in j["jobId"]) == sorted(
        child_id(array["jobId"], i) for i in range(5)
    )
    # Each child is its item: its own handle, its own end (moto ran nothing: no outputs).
    for index, (attempt, status) in enumerate(zip(items, statuses, strict=True)):
        child = child_id(array["jobId"], index)
        assert direct.handles(attempt) == [f"{PENDING}{name}#{index}", child]
        assert status.error is not None and status.error.code == "BatchJobFailed"
        assert f"({child}) succeeded without writing its outputs" in status.error.message
    # Every child runs the item runner on one manifest, which lists the items by index: a
    # presigned URL of it (the job holds no credentials), each item with its own grants.
    command = array["container"]["command"]
    assert command[:3] == ["python3", "-m", "taskfabric_aws.array_item"]
    assert command[3].startswith(moto_endpoint) and "X-Amz-Signature=" in command[3]
    manifest = json.loads(urllib3.request("GET", command[3]).data)
    assert [item["node_id"] for item in manifest["items"]] == ["n0"] * 5
    assert len({item["env"][GRANTS_ENV] for item in manifest["items"]}) == 5
    for item, attempt in zip(manifest["items"], items, strict=True):
        args = item["args"]
        assert args[args.index("--inputs") + 1] == attempt.inputs_uri
        assert args[args.index("--outputs") + 1] == attempt.outputs_uri
        assert args[args.index("--error") + 1] == attempt.error_uri
    # One item alone (a retry, say) is a job of its own, not an array.
    retry = direct.make(aws_tasks.square, i=9)
    backend.submit_map_items([retry])
    direct.wait(backend, retry)
    assert "arrayProperties" not in submits[1] and submits[1]["jobName"] == job_name_of(
        retry.attempt_id
    )


def test_map_items_reattach_to_their_array_job_never_a_second_one(
    engine: Engine, moto_endpoint: str, s3_root: str, tmp_path: Path, plugins: Plugins, queue: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    backend = direct.backend(aws_tasks.square)
    items = [direct.make(aws_tasks.square, i=i) for i in range(4)]
    backend.submit_map_items(items)
    for attempt in items:
        direct.wait(backend, attempt)
    name = array_name_of(items)
    (array,) = [j for j in jobs_named(moto_endpoint, name) if ":" not in j["jobId"]]
    config = load_config(batch_config(tmp_path / "second", s3_root, moto_endpoint, queue))
    with Engine(config, plugins=plugins) as second:
        again = DirectAttempts(second, task_type="python", deadline=60)
        # The engine killed after the submit: the children's ids, or only the provisional
        # handles (killed between SubmitJob and recording the ids): the items adopt their
        # children, found by the array's name and tag, in either order.
        for handles, recorded_after in (
            ([child_id(array["jobId"], i) for i in range(4)], [[]] * 4),
            (
                [f"{PENDING}{name}#{i}" for i in (2, 0, 3, 1)],
                [[child_id(array["jobId"], i)] for i in (2, 0, 3, 1)],
            ),
        ):
            other = again.backend(aws_tasks.square)
            submits = _count_submits(other)
            recorded: list[list[str]] = [[] for _ in items]
            order = [2, 0, 3, 1] if handles[0].startswith(PENDING) else [0, 1, 2, 3]
            resubmitted = [
                dataclasses.replace(items[i], handle=h, record_handle=recorded[n].append)
                for n, (i, h) in enumerate(zip(order, handles, strict=True))
            ]
            other.submit_map_items(resubmitted)
            for n, attempt in enumerate(resubmitted):
                status = again.wait(other, attempt)
                assert status.error is not None
                assert child_id(array["jobId"], order[n]) in status.error.message
            assert recorded == recorded_after
            assert submits == []
            for attempt in resubmitted:
                other.release(attempt.attempt_id)
        # Killed after recording the provisional handles, before SubmitJob: one array now,
        # of the items that came back (two of three: the third went alone, as a retry does).
        fresh = [direct.make(aws_tasks.square, i=i) for i in range(3)]
        lost = array_name_of(fresh)
        other = again.backend(aws_tasks.square)
        submits = _count_submits(other)
        recorded = [[] for _ in fresh]
        pending = [
            dataclasses.replace(a, handle=f"{PENDING}{lost}#{i}", record_handle=recorded[i].append)
            for i, a in enumerate(fresh)
        ]
        other.submit_map_items(pending[:2])
        other.submit_map_items(pending[2:])
        for attempt in pending:
            again.wait(other, attempt)
        assert jobs_named(moto_endpoint, lost) == []
        assert [s.get("arrayProperties") for s in submits] in (
            [{"size": 2}, None],
            [None, {"size": 2}],
        )
        (submitted,) = [s for s in submits if s.get("arrayProperties")]
        (new,) = [
            j for j in jobs_named(moto_endpoint, submitted["jobName"]) if ":" not in j["jobId"]
        ]
        assert recorded[:2] == [
            [f"{PENDING}{submitted['jobName']}#{i}", child_id(new["jobId"], i)] for i in range(2)
        ]
        (alone,) = jobs_named(moto_endpoint, job_name_of(fresh[2].attempt_id))
        assert recorded[2] == [PENDING + alone["jobName"], alone["jobId"]]


@pytest.mark.parametrize(
    ("items", "code"), [(1, "TooManyRequestsException"), (3, "ThrottlingException")]
)
def test_a_throttled_submit_pushes_the_pool_back_and_fails_nothing(
    engine: Engine, moto_endpoint: str, items: int, code: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=120)
    pushbacks: list[Mapping[str, float]] = []
    with throttling_proxy(moto_endpoint, throttle=2, path="/v1/submitjob", code=code) as proxy:
        settings = BatchSettings(
            job_queue=QUEUE,
            image="localhost/x:1",
            endpoint_url=proxy.endpoint,
            poll_seconds=0.1,
            pool="batch-api",
            api_attempts=1,
        )
        backend = BatchBackend("batch", settings, _context(engine, pushbacks))
        submits = _count_submits(backend)
        try:
            attempts = [direct.make(aws_tasks.square, i=i) for i in range(items)]
            backend.submit_map_items(attempts)
            statuses = [direct.wait(backend, a) for a in attempts]
        finally:
            backend.close()
    # Two throttled SubmitJob calls, each a pushback of the pool, then the one that went
    # through: the items ended as their job did (moto ran nothing), none on the throttling.
    assert proxy.seen == ["POST"] * 3
    assert len(submits) == 3 and all(s == submits[0] for s in submits)
    assert ("arrayProperties" in submits[0]) == (items > 1)
    assert [dict(p) for p in pushbacks] == [{"batch-api": 1.0}, {"batch-api": 2.0}]
    for status in statuses:
        assert status.error is not None and status.error.code == "BatchJobFailed", status.error


def _gated_backend(
    engine: Engine, endpoint: str
) -> tuple[BatchBackend, threading.Event, threading.Event]:
    """A backend whose Batch thread waits at every pool token until `go` is set; `waiting`
    is set once it waits there."""
    go, waiting = threading.Event(), threading.Event()

    def take_tokens(weights: Mapping[str, int]) -> float:
        waiting.set()
        go.wait()
        return 0.0

    settings = BatchSettings(
        job_queue=QUEUE, image="localhost/x:1", endpoint_url=endpoint, pool="batch-api"
    )
    context = dataclasses.replace(_context(engine, []), take_tokens=take_tokens)
    return BatchBackend("batch", settings, context), go, waiting


def _wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    deadline = threading.Event()
    timer = threading.Timer(timeout, deadline.set)
    timer.start()
    try:
        while not check():
            if deadline.wait(0.05):
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
    finally:
        timer.cancel()


@pytest.mark.parametrize("array", [False, True], ids=["job", "array-job"])
def test_cancelling_a_resumed_attempt_with_a_provisional_handle_terminates_its_job(
    engine: Engine, moto_endpoint: str, array: bool
) -> None:
    """Killed between SubmitJob and recording the job's id, resumed, then cancelled (an abort,
    a timeout) before the backend looked the job up: the job, found by name and tag, is
    terminated, not left running."""
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    first = direct.backend(aws_tasks.square)
    items = [direct.make(aws_tasks.square, i=i) for i in range(3 if array else 1)]
    first.submit_map_items(items)
    for attempt in items:
        direct.wait(first, attempt)
    if array:
        name = array_name_of(items)
        (submitted,) = [j for j in jobs_named(moto_endpoint, name) if ":" not in j["jobId"]]
        handles = [f"{PENDING}{name}#{i}" for i in range(3)]
        expected = [child_id(submitted["jobId"], i) for i in range(3)]
    else:
        (submitted,) = jobs_named(moto_endpoint, job_name_of(items[0].attempt_id))
        handles, expected = [PENDING + submitted["jobName"]], [submitted["jobId"]]
    backend, go, waiting = _gated_backend(engine, moto_endpoint)
    terminated: list[str] = []
    backend.batch.meta.events.register(
        "provide-client-params.batch.TerminateJob",
        lambda params, **_: terminated.append(params["jobId"]),
    )
    try:
        # The thread busy elsewhere (a job of another task, waiting at the pool), the
        # resumed items come back with their provisional handles and are cancelled at once.
        busy = direct.make(aws_tasks.sized, i=0)
        backend.submit(busy)
        _wait_until(waiting.is_set, "the Batch thread at the pool")
        resumed = [
            dataclasses.replace(a, handle=h, record_handle=lambda _: None)
            for a, h in zip(items, handles, strict=True)
        ]
        backend.submit_map_items(resumed)
        for attempt in resumed:
            backend.cancel(attempt.attempt_id)
        go.set()
        _wait_until(
            lambda: all(backend._jobs[a.attempt_id].terminated for a in resumed),
            "the cancelled items to be terminated",
        )
        for attempt in resumed:
            status = backend.poll(attempt.attempt_id)
            assert status.error is not None and status.error.code == "Cancelled"
    finally:
        go.set()
        backend.close()
    assert sorted(terminated) == sorted(expected)
    assert [s for s in jobs_named(moto_endpoint, submitted["jobName"]) if ":" not in s["jobId"]]


@pytest.mark.parametrize("items", [1, 3], ids=["job", "array-job"])
def test_a_lost_submit_answer_never_makes_a_second_job(
    engine: Engine, moto_endpoint: str, items: int
) -> None:
    """SubmitJob reached Batch, which made the job, but its answer was lost (the connection
    closed): the backend looks the job up by name and tag and adopts it instead of submitting
    it again (a second job for one attempt), as a blind retry would."""
    direct = DirectAttempts(engine, task_type="python", deadline=120)
    with throttling_proxy(moto_endpoint, throttle=0, lose=1, path="/v1/submitjob") as proxy:
        settings = BatchSettings(
            job_queue=QUEUE, image="localhost/x:1", endpoint_url=proxy.endpoint, poll_seconds=0.1
        )
        backend = BatchBackend("batch", settings, _context(engine, []))
        try:
            attempts = [direct.make(aws_tasks.square, i=i) for i in range(items)]
            backend.submit_map_items(attempts)
            statuses = [direct.wait(backend, a) for a in attempts]
        finally:
            backend.close()
    assert proxy.seen == ["POST"]  # one SubmitJob, never a second
    name = array_name_of(attempts) if items > 1 else job_name_of(attempts[0].attempt_id)
    (job,) = [j for j in jobs_named(moto_endpoint, name) if ":" not in j["jobId"]]
    ids = [child_id(job["jobId"], i) for i in range(items)] if items > 1 else [job["jobId"]]
    for attempt, status, job_id in zip(attempts, statuses, ids, strict=True):
        assert direct.handles(attempt)[-1] == job_id
        # moto ran nothing: the job "succeeded" without outputs; no SubmitFailed.
        assert status.error is not None and status.error.code == "BatchJobFailed", status.error
        assert f"({job_id})" in status.error.message


def test_check_says_what_is_wrong_where_and_what_to_do(
    engine: Engine,
    moto_endpoint: str,
    moto_auth_endpoint: str,
    closed_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def check(endpoint: str, queue: str = QUEUE) -> str:
        settings = BatchSettings(job_queue=queue, endpoint_url=endpoint, api_attempts=1)
        backend = BatchBackend("batch", settings, _context(engine, []))
        try:
            result = backend.check()
        finally:
            backend.close()
        assert not result.ok
        return result.message

    where = "(region us-east-1)"
    # A queue of another name: the queues there, and the setting to fix.
    wrong = check(moto_endpoint, "tf-apy")
    assert wrong.startswith(f"no job queue 'tf-apy' at {moto_endpoint} {where} (the queues")
    assert f" {QUEUE}" in wrong and "fix job_queue in [backends.batch]" in wrong, wrong
    # Credentials that Batch refuses (moto checking them against its IAM).
    refused = check(moto_auth_endpoint)
    assert refused.startswith(
        f"AWS Batch at {moto_auth_endpoint} {where} refused the credentials boto3 found"
    ), refused
    assert "(InvalidClientTokenId: The security token included in the request is invalid.)" in (
        refused
    )
    assert "fix them ($AWS_ACCESS_KEY_ID" in refused
    assert "batch:DescribeJobQueues" in refused
    # Nothing listening at the endpoint.
    unreachable = check(closed_endpoint)
    assert unreachable.startswith(f"cannot reach AWS Batch at {closed_endpoint} {where}")
    assert "check endpoint_url and region in [backends.batch]" in unreachable
    # No credentials at all.
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    missing = check(moto_endpoint)
    assert missing.startswith("no AWS credentials found: give the engine some"), missing
    assert "$AWS_PROFILE with ~/.aws/credentials" in missing


def test_an_unreachable_endpoint_fails_the_attempt_saying_what_to_check(
    engine: Engine, closed_endpoint: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=120)
    settings = BatchSettings(
        job_queue=QUEUE,
        image="localhost/x:1",
        endpoint_url=closed_endpoint,
        poll_seconds=0.1,
        api_attempts=2,
    )
    backend = BatchBackend("batch", settings, _context(engine, []))
    try:
        attempt = direct.make(aws_tasks.square, i=1)
        backend.submit(attempt)
        status = direct.wait(backend, attempt)
    finally:
        backend.close()
    assert status.error is not None and status.error.code == "SubmitFailed"
    message = status.error.message
    assert f"cannot reach AWS Batch at {closed_endpoint} (region us-east-1)" in message, message
    assert "check endpoint_url and region in [backends.batch]" in message
    assert "(tried 2 times;" in message  # once, and again a round later, then given up


def test_cancelling_one_item_of_an_array_job_terminates_its_child_only(
    engine: Engine, moto_endpoint: str
) -> None:
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    submitted, go, waiting = threading.Event(), threading.Event(), threading.Event()
    go.set()

    def take_tokens(weights: Mapping[str, int]) -> float:
        if submitted.is_set():  # the array job submitted: the thread stops at its next call
            waiting.set()
            go.wait()
        return 0.0

    settings = BatchSettings(
        job_queue=QUEUE, image="localhost/x:1", endpoint_url=moto_endpoint, pool="batch-api"
    )
    context = dataclasses.replace(_context(engine, []), take_tokens=take_tokens)
    backend = BatchBackend("batch", settings, context)
    terminated: list[str] = []
    backend.batch.meta.events.register(
        "provide-client-params.batch.TerminateJob",
        lambda params, **_: terminated.append(params["jobId"]),
    )
    backend.submitter.meta.events.register(
        "after-call.batch.SubmitJob", lambda **_: (go.clear(), submitted.set())
    )
    try:
        items = [direct.make(aws_tasks.square, i=i) for i in range(4)]
        backend.submit_map_items(items)
        _wait_until(waiting.is_set, "the array job to be submitted")
        backend.cancel(items[2].attempt_id)
        go.set()
        _wait_until(lambda: backend._jobs[items[2].attempt_id].terminated, "the item's end")
        statuses = [direct.wait(backend, a) for a in items]
    finally:
        go.set()
        backend.close()
    array_id = direct.handles(items[0])[-1].split(":")[0]
    assert terminated == [child_id(array_id, 2)]
    assert statuses[2].error is not None and statuses[2].error.code == "Cancelled"
    for index in (0, 1, 3):  # the others ended as their children did (moto ran nothing)
        status = statuses[index]
        assert status.error is not None and status.error.code == "BatchJobFailed", status.error


@pytest.mark.parametrize("items", [1, 3], ids=["job", "array-job"])
def test_a_job_id_that_cannot_be_recorded_never_makes_a_second_job(
    engine: Engine, moto_endpoint: str, items: int
) -> None:
    """The database fails just after SubmitJob (the job's id cannot be recorded; the
    provisional handle was): the backend follows the job it has, and never submits it again
    (a later engine would find it by the provisional handle)."""
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    backend = direct.backend(aws_tasks.square)
    submits = _count_submits(backend)
    recorded: list[str] = []

    def record_handle(handle: str) -> None:
        if not handle.startswith(PENDING):
            raise OSError("the metadata database is gone")
        recorded.append(handle)

    attempts = [
        dataclasses.replace(direct.make(aws_tasks.square, i=i), record_handle=record_handle)
        for i in range(items)
    ]
    backend.submit_map_items(attempts)
    statuses = [direct.wait(backend, a) for a in attempts]
    assert len(submits) == 1, submits
    assert len(recorded) == items  # the provisional handles
    for status in statuses:  # the job followed to its end (moto ran nothing: no outputs)
        assert status.error is not None and status.error.code == "BatchJobFailed", status.error


def test_abandon_terminates_the_job_of_an_attempt_no_run_reattached_to(
    engine: Engine, moto_endpoint: str
) -> None:
    """A resumed execution ended without re-attaching to attempts whose jobs an earlier
    engine process submitted: another instance, given each handle (the job id, or the
    provisional name, looked up by name and tag), terminates those jobs; an array child's
    provisional handle is left."""
    direct = DirectAttempts(engine, task_type="python", deadline=60)
    first = direct.backend(aws_tasks.square)
    attempts = [direct.make(aws_tasks.square, i=i) for i in range(2)]
    for attempt in attempts:
        first.submit(attempt)
    for attempt in attempts:
        direct.wait(first, attempt)
    (by_id,) = jobs_named(moto_endpoint, job_name_of(attempts[0].attempt_id))
    (by_name,) = jobs_named(moto_endpoint, job_name_of(attempts[1].attempt_id))
    settings = BatchSettings(job_queue=QUEUE, image="localhost/x:1", endpoint_url=moto_endpoint)
    backend = BatchBackend("batch", settings, _context(engine, []))
    terminated: list[str] = []
    backend.batch.meta.events.register(
        "provide-client-params.batch.TerminateJob",
        lambda params, **_: terminated.append(params["jobId"]),
    )
    backend.abandon(attempts[0].attempt_id, by_id["jobId"])
    backend.abandon(attempts[1].attempt_id, PENDING + by_name["jobName"])
    backend.abandon(f"{attempts[1].attempt_id}x", f"{PENDING}{by_name['jobName']}#0")
    backend.close()  # waits for the terminating threads
    assert sorted(terminated) == sorted([by_id["jobId"], by_name["jobId"]])


@pytest.mark.parametrize(
    ("extra", "gap"),
    [
        ("", ""),
        ('blob_access = "credentials"\n', 'blob_access = "credentials": each job would reach'),
        ('pass_env = ["AWS_ACCESS_KEY_ID", "HOME"]\n', "passes AWS_ACCESS_KEY_ID to every job"),
        ('env = { AWS_PROFILE = "all" }\n', "passes AWS_PROFILE to every job"),
        ('job_role_arn = "arn:aws:iam::1:role/r"\n', "job_role_arn: every job gets the role's"),
    ],
)
def test_a_multi_tenant_engine_runs_jobs_only_with_presigned_access(
    tmp_path: Path,
    s3_root: str,
    moto_endpoint: str,
    queue: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
    extra: str,
    gap: str,
) -> None:
    """What a multi-tenant server checks at launch: a job that would hold credentials of the
    whole store (the old mode, passed or set variables, a job role) is refused, saying why."""
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    config = load_config(batch_config(tmp_path / "home", s3_root, moto_endpoint, queue, extra))
    compiled = aws_tasks.typed_pipeline.compile()
    with Engine(config, plugins=plugins, isolate_code=True) as engine:
        if not gap:
            engine.check_backends(compiled)
            return
        with pytest.raises(TaskfabricError, match="does not isolate") as refused:
            engine.check_backends(compiled)
    assert gap in str(refused.value)


class _Broken:
    """A logger whose warnings and errors raise (a captured stream closed under the thread,
    say); its other calls pass."""

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> None:
            if name in ("warning", "error", "exception"):
                raise ValueError("I/O operation on closed file")

        return call


def test_a_failing_round_whose_log_call_raises_does_not_end_the_batch_thread(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Batch thread is all that watches the jobs: a round that fails, and whose log
    call fails too, is tried again, and the attempt ends."""
    from taskfabric_aws import _batch

    direct = DirectAttempts(engine, task_type="python", deadline=30)
    backend = direct.backend(aws_tasks.square)
    real_round = backend._round
    rounds: list[int] = []

    def round_failing_once() -> None:
        rounds.append(1)
        if len(rounds) == 1:
            raise RuntimeError("the first round fails")
        real_round()

    monkeypatch.setattr(backend, "_round", round_failing_once)
    monkeypatch.setattr(_batch, "log", _Broken())
    attempt = direct.make(aws_tasks.square, i=4)
    backend.submit(attempt)
    status = direct.wait(backend, attempt)
    assert status.phase is AttemptPhase.FAILED  # moto ran nothing: no outputs
    assert status.error is not None and status.error.code == "BatchJobFailed", status.error
    assert len(rounds) >= 2


def test_a_job_whose_end_cannot_be_read_fails_its_attempt_not_the_others(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading how one job ended fails each time (its documents, its log): that attempt fails
    with why, instead of the round failing for ever, and the other job of the batch ends."""
    direct = DirectAttempts(engine, task_type="python", deadline=30)
    backend = direct.backend(aws_tasks.square)
    broken, other = direct.make(aws_tasks.square, i=6), direct.make(aws_tasks.square, i=7)
    real_ended = backend._ended

    def ended(job: Any, found: dict[str, Any]) -> Any:
        if job.attempt.attempt_id == broken.attempt_id:
            raise OSError("the log folder is gone")
        return real_ended(job, found)

    monkeypatch.setattr(backend, "_ended", ended)
    backend.submit(broken)
    backend.submit(other)
    status = direct.wait(backend, broken)
    assert status.phase is AttemptPhase.FAILED
    assert status.error is not None and status.error.code == "BatchJobUnreadable", status.error
    assert "the log folder is gone" in status.error.message and status.error.retryable
    second = direct.wait(backend, other)
    assert second.error is not None and second.error.code == "BatchJobFailed"
