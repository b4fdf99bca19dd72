"""The aws-batch backend with jobs that really run: moto's Batch starts each job as a container
through podman's Docker-compatible API (host network, so the job reaches moto's S3 on
127.0.0.1), in an image built from a spec by taskfabric-containers: the core, pandas,
taskfabric-aws and this folder's tasks. The typed data, the outputs, the error documents and
the logs all travel through S3 and CloudWatch Logs. The jobs hold no AWS credentials: they
reach their own attempt's blobs through the URLs the engine presigned for them."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_tasks
import pytest
from conftest import TASKS_DIR, client

from taskfabric import File
from taskfabric.config import load_config
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP, STORAGE_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_aws import BatchBackend, S3BlobStore
from taskfabric_aws._arrays import child_id
from taskfabric_aws._batch import TAG_EXECUTION
from taskfabric_aws.testing import FAKE_CREDENTIALS, MotoMissing, create_batch_queue, moto_server
from taskfabric_containers import ImageSpec, build_image
from taskfabric_containers._client import ContainerApi
from taskfabric_containers.testing import PodmanMissing, podman_service

REPO = Path(__file__).resolve().parents[2]
#: The jobs' image: the core with pandas, this plugin, and this folder's tasks on PYTHONPATH.
TASK_IMAGE = ImageSpec(
    name="taskfabric-aws-it",
    packages=["./core[pandas]", "./plugins/aws"],
    code=["integration_tests/aws/tasks"],
    root=str(REPO),
)
QUEUE = "tf-jobs"
BUCKET = "taskfabric-jobs"


def _required(what: str, exc: Exception) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the Batch jobs suite needs {what} under CI: {exc}")
    pytest.skip(str(exc))


@pytest.fixture(scope="session")
def podman_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TASKFABRIC_TEST_PODMAN_URL")
    if url:
        yield url
        return
    try:
        with podman_service(tmp_path_factory.mktemp("podman")) as started:
            yield started
    except PodmanMissing as exc:
        _required("podman", exc)


@pytest.fixture(scope="session")
def task_image(podman_url: str) -> str:
    api = ContainerApi(podman_url, timeout=1800)
    try:
        return build_image(TASK_IMAGE, api, print).ref
    finally:
        api.close()


@pytest.fixture(scope="session")
def jobs_endpoint(
    tmp_path_factory: pytest.TempPathFactory, podman_url: str, task_image: str
) -> Iterator[str]:
    """A moto server of its own whose Batch runs containers through podman."""
    env = {"DOCKER_HOST": podman_url, "MOTO_DOCKER_NETWORK_MODE": "host"}
    try:
        with moto_server(tmp_path_factory.mktemp("moto-jobs"), env=env) as endpoint:
            create_batch_queue(endpoint, QUEUE)
            client("s3", endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint
    except MotoMissing as exc:
        _required("moto's server", exc)


def write_config(folder: Path, endpoint: str, image: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taskfabric.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "s3://{BUCKET}/{folder.name}-{os.getpid()}-{time.monotonic_ns()}"
            options = {{ endpoint_url = "{endpoint}" }}

            [metadata]
            url = "sqlite:///{folder / "meta.db"}"

            [task_types]
            python = "batch"

            [backends.batch]
            driver = "aws-batch"
            job_queue = "{QUEUE}"
            image = "{image}"
            endpoint_url = "{endpoint}"
            poll_seconds = 0.5
            """)
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path, jobs_endpoint: str, task_image: str) -> Path:
    return write_config(tmp_path / "home", jobs_endpoint, task_image)


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(STORAGE_GROUP, "s3", S3BlobStore)
    plugins.add_driver(BACKENDS_GROUP, "aws-batch", BatchBackend)
    with use_plugins(plugins):
        yield plugins


@pytest.fixture
def engine(
    config_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    with Engine(load_config(config_path), plugins=plugins) as engine:
        yield engine


def jobs_of(endpoint: str, execution_id: str) -> list[dict[str, Any]]:
    batch = client("batch", endpoint)
    ids = [
        s["jobId"]
        for status in (
            "SUBMITTED",
            "PENDING",
            "RUNNABLE",
            "STARTING",
            "RUNNING",
            "SUCCEEDED",
            "FAILED",
        )
        for s in batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]
    ]
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), 100):
        found += batch.describe_jobs(jobs=ids[start : start + 100])["jobs"]
    return [j for j in found if j.get("tags", {}).get(TAG_EXECUTION) == execution_id]


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TASKFABRIC_DATA_ROOT", None)
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip


def test_a_typed_workflow_with_files_and_a_dataframe_runs_as_batch_jobs(
    engine: Engine, jobs_endpoint: str, tmp_path: Path
) -> None:
    result = engine.launch(aws_tasks.typed_pipeline, {"n": 5})
    assert result.phase == "SUCCEEDED", result.error
    numbers, parts, total = result.python_outputs(
        aws_tasks.typed_pipeline, engine.store, tmp_path / "read"
    )
    assert total == sum(i * i for i in range(5))
    assert numbers.read_text().splitlines() == [str(i) for i in range(5)]
    assert sorted(p.name for p in parts) == [f"part-{i}.txt" for i in range(5)]
    jobs = jobs_of(jobs_endpoint, result.execution_id)
    assert len(jobs) == 4  # one job per task attempt
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    attempts = engine.metadata.attempts(result.execution_id)
    assert {a.backend for a in attempts} == {"batch"}


@pytest.mark.parametrize("access", ["presigned", "credentials"])
def test_a_job_of_one_project_reaches_none_of_anothers_data(
    tmp_path: Path,
    jobs_endpoint: str,
    task_image: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
    access: str,
) -> None:
    """Alpha's job, with presigned access (the default): no credentials in its environment;
    beta's blob refused through taskfabric's store (nothing granted), boto3 (no credentials)
    and plain HTTP (S3's 403); no listing, no write outside its folders; its own input read.
    With `blob_access = "credentials"` (not isolated) the same task reads and writes beta's
    data, which shows what the presigned run's refusals are worth."""
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    # The engine's own credentials (moto takes any): never in the job, its grants, the
    # database or the bucket, only the key id in presigned URLs. (The engine's log is
    # checked by test_s3_engine.py; capturing it here would outlive this engine.)
    secret_key = "tf-engine-secret-never-in-a-job-0123456789ab"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret_key)
    extra = ""
    if access == "credentials":
        extra = f'blob_access = "credentials"\npass_env = {json.dumps(sorted(FAKE_CREDENTIALS))}\n'
    config = write_config(tmp_path / access, jobs_endpoint, task_image, extra)
    own = tmp_path / "own.txt"
    own.write_text("alpha's own data")
    with Engine(load_config(config), plugins=plugins) as engine:
        secret = engine.store.uri("uploads", "beta", "secret.txt")
        engine.store.put_bytes(secret, b"beta's secret")
        planted = engine.store.uri("uploads", "beta", "planted.txt")
        result = engine.launch(
            aws_tasks.snooping,
            {"own": File(own), "other": secret, "outside": planted, "endpoint": jobs_endpoint},
            project="alpha",
        )
        assert result.phase == "SUCCEEDED", result.error
        found = result.python_outputs(aws_tasks.snooping, engine.store, tmp_path / "read")
        planted_exists = engine.store.exists(planted)
        assert engine.store.get_bytes(secret) == b"beta's secret"
        stored = [engine.store.get_bytes(u) for u in engine.store.list(engine.store.uri())]
    (job,) = jobs_of(jobs_endpoint, result.execution_id)
    assert found["own"] == "alpha's own data"
    if access == "credentials":
        assert found["credentials"] == "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY", found
        assert found["store_read"] == 'ok: b"beta\'s secret"', found
        assert found["boto3_read"] == 'ok: b"beta\'s secret"', found
        assert found["store_write"] == "ok: None" and planted_exists, found
        return
    assert found["credentials"] == "", found
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "meta.db" for p in files) and len(stored) > 3, (files, stored)
    assert [p for p in files if secret_key.encode() in p.read_bytes()] == []
    assert [b for b in stored if secret_key.encode() in b] == []
    assert secret_key not in json.dumps(job, default=str)
    assert not {e["name"] for e in job["container"]["environment"]} & {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    refused = "refused: S3StoreError: cannot {} s3://"
    assert found["store_read"].startswith(refused.format("read")), found
    assert "access to its own blobs only" in found["store_read"], found
    assert found["store_list"].startswith(refused.format("list")), found
    # A listing of the whole bucket shows the blobs granted to the attempt, never asking S3.
    assert found["store_list_all"].startswith("ok: ['s3://"), found
    assert "/uploads/beta/" not in found["store_list_all"], found
    assert found["store_write"].startswith(refused.format("write")), found
    assert not planted_exists
    assert found["boto3_read"].startswith("refused: NoCredentialsError"), found
    # moto refuses an unsigned read of a private object as S3 does; it would take an
    # unsigned listing or write (see test_s3_grants.py for what moto does not enforce).
    assert found["http_read"] == "403", found


def test_outputs_that_name_another_projects_blob_are_refused(
    engine: Engine, jobs_endpoint: str
) -> None:
    """A job may write its outputs document: one that names a blob neither among its inputs
    nor under its own raw-data folder fails the attempt (the next task would be granted it)."""
    secret = engine.store.uri("uploads", "beta", "secret.txt")
    engine.store.put_bytes(secret, b"beta's secret")
    result = engine.launch(aws_tasks.forging, {"other": secret}, project="alpha")
    assert result.phase == "FAILED"
    assert result.error is not None and result.error["code"] == "SandboxRefused", result.error
    assert f"an output names {secret}, which is neither" in result.error["message"]


def test_a_failing_job_fails_the_attempt_with_its_error_and_its_cloudwatch_log(
    engine: Engine, config_path: Path, jobs_endpoint: str
) -> None:
    result = engine.launch(aws_tasks.failing, {"reason": "no such input"})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "ValueError", result.error
    assert "the task gave up: no such input" in result.error["message"]
    (job,) = jobs_of(jobs_endpoint, result.execution_id)
    assert job["status"] == "FAILED"
    # The job's CloudWatch Logs stream is the attempt's log.
    shown = cli(config_path, "executions", "logs", result.execution_id, "n0")
    assert "about to fail: no such input" in shown.stdout, shown.stdout + shown.stderr
    (attempt,) = engine.metadata.attempts(result.execution_id)
    names = [link["name"] for link in attempt.log_links]
    assert names[:2] == ["log", "cloudwatch"], attempt.log_links
    # A job that ends without an error document (its process killed, out of memory, an image
    # without taskfabric): Batch's reason and the last lines of its log are the error.
    died = engine.launch(aws_tasks.dying, {"code": 3})
    assert died.phase == "FAILED"
    assert died.error is not None and died.error["code"] == "BatchJobFailed", died.error
    (job,) = jobs_of(jobs_endpoint, died.execution_id)
    assert f"AWS Batch job {job['jobName']} ({job['jobId']}) failed" in died.error["message"]
    assert "last lines of its log:\nexiting with 3, no error document" in died.error["message"]


def test_a_timeout_terminates_the_job(engine: Engine, jobs_endpoint: str) -> None:
    result = engine.launch(aws_tasks.slow_with_timeout, {"seconds": 600.0})
    assert result.phase in ("FAILED", "TIMED_OUT"), result
    assert result.error is not None and result.error["code"] == "Timeout", result.error
    (job,) = jobs_of(jobs_endpoint, result.execution_id)
    deadline = time.monotonic() + 120
    while job["status"] != "FAILED" and time.monotonic() < deadline:
        time.sleep(0.5)
        (job,) = jobs_of(jobs_endpoint, result.execution_id)
    assert job["status"] == "FAILED", job  # terminated, not left running for 600 s
    assert job["statusReason"] == "cancelled by taskfabric (abort or timeout)"


def test_kill_9_then_resume_reattaches_to_the_job(
    config_path: Path, jobs_endpoint: str, plugins: Plugins
) -> None:
    tasks = TASKS_DIR / "aws_tasks.py"
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TASKFABRIC_DATA_ROOT", None)
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(config_path)]
    engine = subprocess.Popen(
        [*base, "run", f"{tasks}:slow", "--seconds", "15"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        job = _wait_for_a_job(jobs_endpoint, config_path, deadline=time.monotonic() + 240)
    finally:
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
    execution_id = job["tags"][TAG_EXECUTION]
    resumed = cli(config_path, "executions", "resume", execution_id)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    shown = cli(config_path, "executions", "show", execution_id, "-o", "json")
    data = json.loads(shown.stdout)
    assert data["execution"]["phase"] == "SUCCEEDED", data
    # One job for the attempt: the one the killed engine submitted.
    assert [j["jobId"] for j in jobs_of(jobs_endpoint, execution_id)] == [job["jobId"]]


def test_logs_follow_prints_cloudwatch_lines_while_the_job_runs_and_cancel_terminates_it(
    tmp_path: Path,
    jobs_endpoint: str,
    task_image: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    # (Only here: twenty jobs read every half second would slow the other tests down.)
    config_path = write_config(
        tmp_path / "follow", jobs_endpoint, task_image, "follow_logs_seconds = 0.5\n"
    )
    with Engine(load_config(config_path), plugins=plugins) as engine:
        outcome: list[Any] = []
        launch = threading.Thread(
            target=lambda: outcome.append(engine.launch(aws_tasks.slow, {"seconds": 600.0})),
            daemon=True,
        )
        launch.start()
        batch, logs = client("batch", jobs_endpoint), client("logs", jobs_endpoint)
        job = _wait_for_a_job(jobs_endpoint, config_path, deadline=time.monotonic() + 240)
        execution_id = job["tags"][TAG_EXECUTION]

        def running_stream() -> str:
            (found,) = batch.describe_jobs(jobs=[job["jobId"]])["jobs"]
            stream = (found.get("container") or {}).get("logStreamName")
            return str(stream) if found["status"] == "RUNNING" and stream else ""

        stream = _wait_for(running_stream, 240, "the job to run")
        env = {**os.environ, "COLUMNS": "200"}
        env.pop("TASKFABRIC_DATA_ROOT", None)
        follower = subprocess.Popen(
            [sys.executable, "-m", "taskfabric.cli", "--config", str(config_path),
             "executions", "logs", execution_id, "n0", "--follow"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        )  # fmt: skip
        printed: queue.SimpleQueue[str] = queue.SimpleQueue()
        threading.Thread(
            target=lambda: [printed.put(line) for line in follower.stdout or ()], daemon=True
        ).start()
        try:
            # Lines reach the job's stream while it runs (the awslogs driver's part); the
            # follower prints each, and the job still runs when it has.
            for text in ("first live line", "second live line"):
                logs.put_log_events(
                    logGroupName="/aws/batch/job",
                    logStreamName=stream,
                    logEvents=[{"timestamp": int(time.time() * 1000), "message": text}],
                )
                deadline = time.monotonic() + 120
                while True:
                    line = printed.get(timeout=max(0.1, deadline - time.monotonic()))
                    if line.rstrip("\n") == text:
                        break
                assert running_stream() == stream
        finally:
            # A user cancels the execution from another process, as from a shell.
            cancelled = cli(config_path, "executions", "cancel", execution_id)
            launch.join(120)
            follower.wait(120)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    # The follower stopped when the attempt did; the execution was aborted, its job terminated
    # (not left running for its 600 s).
    assert follower.returncode == 0
    assert outcome and outcome[0].phase == "ABORTED", outcome
    (ended,) = _wait_for(
        lambda: [j for j in jobs_of(jobs_endpoint, execution_id) if j["status"] == "FAILED"],
        120,
        "the cancelled job to be terminated",
    )
    assert ended["jobId"] == job["jobId"]
    assert ended["statusReason"] == "cancelled by taskfabric (abort or timeout)"


def _wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def _wait_for_a_job(endpoint: str, config_path: Path, deadline: float) -> dict[str, Any]:
    batch = client("batch", endpoint)
    seen = {
        s["jobId"]
        for status in ("SUCCEEDED", "FAILED")
        for s in batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]
    }
    while time.monotonic() < deadline:
        for status in ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"):
            for summary in batch.list_jobs(jobQueue=QUEUE, jobStatus=status)["jobSummaryList"]:
                if summary["jobId"] not in seen and summary["jobName"].startswith("tf-"):
                    (job,) = batch.describe_jobs(jobs=[summary["jobId"]])["jobs"]
                    if "-pause-" in job["jobDefinition"]:
                        return dict(job)
        time.sleep(0.2)
    raise AssertionError("the engine submitted no job in 240 s")


def test_a_map_of_20_items_is_one_array_job_and_survives_a_kill_9(
    tmp_path: Path,
    jobs_endpoint: str,
    task_image: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    # Parallelism above the map's size: all twenty items start in one turn of the loop.
    config = write_config(
        tmp_path / "array", jobs_endpoint, task_image, "\n[engine]\nparallelism = 32\n"
    )
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TASKFABRIC_DATA_ROOT", None)
    engine_process = subprocess.Popen(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "run",
         f"{TASKS_DIR / 'aws_map_tasks.py'}:squares_but_one",
         "--numbers", json.dumps(list(range(20)))],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    batch = client("batch", jobs_endpoint)

    def the_array_job() -> dict[str, Any] | None:
        listed = batch.list_jobs(jobQueue=QUEUE, filters=[{"name": "JOB_NAME", "values": ["tf-*"]}])
        parents = [
            s["jobId"]
            for s in listed["jobSummaryList"]
            if "-x20-" in s["jobName"] and ":" not in s["jobId"]
        ]
        for job in batch.describe_jobs(jobs=parents)["jobs"] if parents else []:
            if "-square_unless_bad-" in job["jobDefinition"]:
                return dict(job)
        return None

    try:
        array = _wait_for(the_array_job, 240, "the engine's array job")
    finally:
        # Killed right after SubmitJob (before or after it recorded the children's ids): the
        # children run on, and the resumed engine finds them.
        os.killpg(engine_process.pid, signal.SIGKILL)
        engine_process.wait()
    execution_id = array["tags"][TAG_EXECUTION]
    resumed = cli(config, "executions", "resume", execution_id)
    assert resumed.returncode == 1, resumed.stdout + resumed.stderr  # the bad item failed it
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.metadata.get_execution(execution_id)
        nodes = {n.node_id: n for n in engine.metadata.nodes(execution_id)}
        attempts = engine.metadata.attempts(execution_id)
        outputs = {
            i: engine.literals.get(nodes[f"n0[{i}]"].outputs_uri)
            for i in range(20)
            if nodes[f"n0[{i}]"].phase == "SUCCEEDED"
        }
    # The bad item fails the map, alone, with its own error.
    assert result is not None and result.phase == "FAILED"
    assert result.error is not None and result.error["code"] == "ValueError", result.error
    assert "item 7 is bad" in result.error["message"]
    assert nodes["n0[7]"].phase == "FAILED"
    # Every other item succeeded, with its own outputs.
    assert sorted(outputs) == [i for i in range(20) if i != 7]
    for i, data in outputs.items():
        literals = types_pb2.LiteralMap()
        literals.ParseFromString(data)
        assert literals.literals["o0"].integer == i * i
    # In Batch: one array job of 20 children, child i being item i (each item's one attempt
    # re-attached to it); no second array job, no other job.
    # (Described again: moto lists the children of an array job it is still creating only
    # once it has created them all.)
    (described,) = jobs_of(jobs_endpoint, execution_id)
    assert described["jobId"] == array["jobId"]
    assert described["arrayProperties"]["size"] == 20
    children = batch.list_jobs(arrayJobId=array["jobId"])["jobSummaryList"]
    assert sorted(c["jobId"] for c in children) == sorted(
        child_id(array["jobId"], i) for i in range(20)
    )
    assert sorted((a.node_id, a.attempt, a.handle) for a in attempts) == sorted(
        (f"n0[{i}]", 1, child_id(array["jobId"], i)) for i in range(20)
    )
    statuses = {c["jobId"]: c["status"] for c in children}
    assert statuses.pop(child_id(array["jobId"], 7)) == "FAILED"
    assert set(statuses.values()) == {"SUCCEEDED"}
    # Each item's log is its child's CloudWatch stream.
    shown = cli(config, "executions", "logs", execution_id, "n0[7]")
    assert "item 7 starts" in shown.stdout and "item 3 starts" not in shown.stdout, shown
