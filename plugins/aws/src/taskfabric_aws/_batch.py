"""The `aws-batch` backend: each attempt a job of an AWS Batch queue.

One thread per backend talks to Batch: it submits new attempts, terminates cancelled ones and
asks `describe_jobs` about every live job, 100 per call, each `poll_seconds`; the engine's
`poll` reads what it last learnt. A throttling answer (after `api_attempts` tries) pushes the
backend's pool back and slows the thread down; it never fails an attempt.

Exactly one job per attempt: the job's name is derived from the attempt id, and a tag carries a
hash of it. Before submitting, the backend records the provisional handle `pending:<name>`;
after, the job id. Re-submitted after an engine's `kill -9`, an attempt with a job id adopts
that job; one with the provisional handle looks the job up by name and tag (it may have been
submitted just before the engine died) and submits only if there is none.

A map's items that start together (`submit_map_items`) go as one array job: one `SubmitJob`
for N items, its child `<array job id>:<i>` being item i (see _arrays.py). The handles work
the same way: `pending:<array name>#<i>` before the submit, the child's id after.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import boto3
import botocore.config
import botocore.exceptions

from taskfabric.backends import check_outputs, node_key, tail
from taskfabric.core.v1 import execution_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    RUNNING,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendContext,
    BackendSettings,
    CheckResult,
    LogLink,
    PoolRequest,
    TaskAttempt,
)
from taskfabric.tasklogs import LOG_LINK_NAME, keep_log, live_log_path
from taskfabric_aws._arrays import (
    ARRAY_SEPARATOR,
    MAX_ARRAY,
    array_key,
    array_name_of,
    child_id,
    manifest_bytes,
    parse_pending_child,
)
from taskfabric_aws._batch_settings import BatchSettings, resources_of
from taskfabric_aws._checks import batch_failure, check_queue
from taskfabric_aws._grants import CREDENTIAL_VARIABLES, grant_attempt, grant_seconds
from taskfabric_aws._joblogs import LogCursor, LogReader
from taskfabric_aws._s3 import GRANTS_ENV, S3BlobStore

__all__ = ["BatchBackend", "job_name_of"]

log = get_logger("taskfabric.aws")

#: The provisional handle, recorded before the job is submitted: the job's name.
PENDING = "pending:"
TAG_ATTEMPT = "taskfabric.attempt"
TAG_EXECUTION = "taskfabric.execution_id"
#: The tag of an array job: `array_key` of its items.
TAG_ARRAY = "taskfabric.array"
_THROTTLING = frozenset(
    {"TooManyRequestsException", "ThrottlingException", "Throttling", "RequestLimitExceeded"}
)
_ACTIVE = frozenset({"SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING"})
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_-]+")
#: Most ids one describe_jobs call takes.
DESCRIBE_BATCH = 100


def attempt_key(attempt_id: str) -> str:
    """The attempt's tag value: a hash (tag values cannot hold every character of an id)."""
    return hashlib.sha256(attempt_id.encode()).hexdigest()[:32]


def job_name_of(attempt_id: str) -> str:
    """A Batch job name of the attempt: readable, unique, at most 128 of [A-Za-z0-9_-]."""
    readable = _NAME_CHARS.sub("-", attempt_id).strip("-")[:100]
    return f"tf-{readable}-{attempt_key(attempt_id)[:12]}"


def _maybe_acted(exc: Exception) -> bool:
    """Whether a failed call is worth another try, and may have been done by Batch all the
    same: no connection (never sent), its answer lost (the connection closed or timed out
    once the request was sent) or Batch failed on its side (5xx). A SubmitJob that failed so
    is looked up by name and tag before it is sent again."""
    if isinstance(exc, (botocore.exceptions.HTTPClientError, botocore.exceptions.ConnectionError)):
        return True
    if isinstance(exc, botocore.exceptions.ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return int(status) >= 500
    return False


class _Throttled(Exception):
    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


@dataclass
class _Job:
    attempt: TaskAttempt
    name: str
    job_id: str = ""
    #: "submit" (not yet submitted), "active" (a job id, not ended), "done".
    state: str = "submit"
    #: Look for a job of this name before submitting (the handle was provisional).
    look_up: bool = False
    cancelled: bool = False
    terminated: bool = False
    released: bool = False
    status: AttemptStatus = field(default_factory=lambda: RUNNING)
    log_stream: str = ""
    log_cursor: LogCursor = field(default_factory=LogCursor)
    #: The array job this attempt is a child of, once grouped (its index in `array.jobs`).
    array: _Array | None = None
    #: SubmitJob calls (and look-ups after them) that failed without a clear answer.
    tries: int = 0
    #: The job's command and granted environment, made once (a SubmitJob sent again after
    #: throttling sends the same request, and the grants are not presigned again).
    prepared: tuple[list[str], dict[str, str]] | None = None


@dataclass
class _Array:
    """Items of one map submitted as one array job; `jobs[i]` is child i."""

    name: str
    jobs: list[_Job]
    #: Look for an array job of this name before submitting (the handles were provisional);
    #: `indexes[i]` is then the child index `jobs[i]` had in it.
    look_up: bool = False
    indexes: list[int] = field(default_factory=list)
    #: SubmitJob calls (and look-ups after them) that failed without a clear answer.
    tries: int = 0
    #: The array job's name and command, made once (as `_Job.prepared`).
    prepared: tuple[str, list[str]] | None = None


class BatchBackend(Backend[BatchSettings]):
    driver: ClassVar[str] = "aws-batch"
    settings_model: ClassVar[type[BackendSettings]] = BatchSettings
    poll_interval: ClassVar[float | None] = None  # the Batch thread notifies
    reattaches: ClassVar[bool] = True
    #: A job runs on other machines, with the settings' environment only; with
    #: `blob_access = "presigned"` (the default) it holds no credential of the blob store,
    #: only presigned access to its own attempt's blobs. `isolation_gaps` says when the
    #: settings give it more (docs/server.md, "Isolation").
    isolated: ClassVar[bool] = True

    def __init__(self, name: str, settings: BatchSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        if context.store.local_path(context.store.uri("probe")) is not None:
            raise ValueError(
                "aws-batch runs tasks on other machines, which cannot read a local blob "
                "store: put the data root in S3 ([storage] data_root = "
                '"s3://bucket/prefix", with taskfabric-aws installed)'
            )
        if settings.blob_access == "presigned" and not isinstance(context.store, S3BlobStore):
            raise ValueError(
                f'[backends.{name}] blob_access = "presigned" presigns access to the s3 blob '
                f"store, and this one is {type(context.store).__name__}: put the data root "
                'in S3, or set blob_access = "credentials" (jobs then reach the whole store)'
            )
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": settings.api_attempts}
        )
        session = boto3.session.Session()
        kwargs: dict[str, Any] = {"region_name": settings.region, "config": config}
        if settings.endpoint_url:
            kwargs["endpoint_url"] = settings.endpoint_url
        self.batch: Any = session.client("batch", **kwargs)
        # SubmitJob is not idempotent: a blind retry after a lost answer would make a second
        # job for the attempt. It is sent once per round; a failure that may have made the
        # job is followed by a look-up by name and tag before it is sent again.
        once = botocore.config.Config(retries={"mode": "standard", "total_max_attempts": 1})
        self.submitter: Any = session.client("batch", **{**kwargs, "config": once})
        self.logs: Any = session.client("logs", **kwargs)
        self._logs = LogReader(
            self.logs, settings.log_group, self.batch.meta.region_name, self._take_token
        )
        self._jobs: dict[str, _Job] = {}
        self._definitions: dict[str, str] = {}  # job definition name -> ARN
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._backoff = 0.0
        self._abandoning: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._loop, name=f"aws-batch-{name}", daemon=True)
        self._thread.start()

    # -- the engine's calls ------------------------------------------------------------------

    def isolation_gaps(self, task: Any) -> list[str]:
        gaps: list[str] = []
        section = f"[backends.{self.name}]"
        if self.settings.blob_access == "credentials":
            gaps.append(
                f'{section} blob_access = "credentials": each job would reach the blob store '
                "with credentials of the whole store (every project's data); remove it (the "
                'default, "presigned", gives a job access to its own attempt\'s blobs only)'
            )
        passed = sorted(
            {*self.settings.pass_env, *self.settings.env} & CREDENTIAL_VARIABLES,
        )
        if passed:
            gaps.append(
                f"{section} passes {', '.join(passed)} to every job: AWS credentials that may "
                "reach the whole blob store; remove them from pass_env and env"
            )
        if self.settings.job_role_arn:
            gaps.append(
                f"{section} job_role_arn: every job gets the role's credentials, and taskfabric "
                "cannot tell whether they reach the blob store's bucket; remove it (jobs read "
                "and write their blobs through presigned URLs and need no role), or declare "
                "the deployment single-tenant"
            )
        return gaps

    def pool_requests(self, task: Any) -> list[PoolRequest]:
        return [PoolRequest(self.settings.pool)] if self.settings.pool else []

    def submit(self, attempt: TaskAttempt) -> None:
        self.submit_map_items([attempt])

    def submit_map_items(self, attempts: Sequence[TaskAttempt]) -> None:
        """Items of one map: the new ones as one array job (a job alone when only one is
        new); those re-submitted with a handle re-attach to their job or array job."""
        fresh: list[_Job] = []
        pending: dict[str, list[tuple[_Job, int]]] = {}
        with self._lock:
            for attempt in attempts:
                if attempt.attempt_id in self._jobs:
                    continue  # submitted before: an attempt never runs twice
                job = _Job(attempt, job_name_of(attempt.attempt_id))
                self._jobs[attempt.attempt_id] = job
                handle = attempt.handle
                if handle and not handle.startswith(PENDING):
                    job.job_id, job.state = handle, "active"
                elif handle:
                    child = parse_pending_child(handle[len(PENDING) :])
                    if child is None:
                        job.look_up = True
                    else:
                        pending.setdefault(child.array_name, []).append((job, child.index))
                else:
                    fresh.append(job)
            for name, children in pending.items():
                jobs = [job for job, _ in children]
                self._group(_Array(name, jobs, True, [index for _, index in children]))
            for start in range(0, len(fresh), MAX_ARRAY):
                chunk = fresh[start : start + MAX_ARRAY]
                if len(chunk) > 1:
                    self._group(_Array(array_name_of([j.attempt for j in chunk]), chunk))
        self._wake.set()

    def _group(self, array: _Array) -> None:
        for job in array.jobs:
            job.array = array

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            job = self._jobs.get(attempt_id)
            if job is None:
                return RUNNING
            if job.cancelled:
                return AttemptStatus(
                    AttemptPhase.FAILED,
                    error=AttemptError(
                        "Cancelled", f"job {job.name} was terminated", "system", False
                    ),
                )
            return job.status

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            job = self._jobs.get(attempt_id)
            if job is None or job.state == "done":
                return
            job.cancelled = True
        self._wake.set()  # the thread terminates the job (or never submits it)

    def release(self, attempt_id: str) -> None:
        with self._lock:
            job = self._jobs.get(attempt_id)
            if job is None:
                return
            job.released = True
            if not (job.cancelled and not job.terminated):
                del self._jobs[attempt_id]  # else the thread terminates the job first

    def abandon(self, attempt_id: str, handle: str) -> None:
        """An earlier engine process's job that no run will re-attach to: terminated, on a
        thread of its own (`close` waits for it). A provisional handle of a job (its name) is
        looked up by name and the attempt's tag first; one of an array child is left (its
        array job is found only with its other items)."""
        if not handle or (handle.startswith(PENDING) and ARRAY_SEPARATOR in handle):
            return
        thread = threading.Thread(target=self._abandon, args=(attempt_id, handle), daemon=True)
        with self._lock:
            self._abandoning = [t for t in self._abandoning if t.is_alive()]
            self._abandoning.append(thread)
        thread.start()

    def _abandon(self, attempt_id: str, handle: str) -> None:
        try:
            job_id = handle
            if handle.startswith(PENDING):
                job_id = self._find_named(handle.removeprefix(PENDING), attempt_id)
                if not job_id:
                    return  # never submitted
            self._take_token()
            self._call(
                "TerminateJob",
                self.batch.terminate_job,
                jobId=job_id,
                reason="the resumed taskfabric execution ended without re-attaching to it",
            )
            log.info("terminated an abandoned job", backend=self.name, job_id=job_id)
        except Exception as exc:
            log.warning("could not terminate an abandoned job", handle=handle, error=str(exc))

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)
        with self._lock:
            abandoning = list(self._abandoning)
        for thread in abandoning:
            thread.join(timeout=30)

    def check(self) -> CheckResult:
        return check_queue(self.batch, self.settings.job_queue, f"[backends.{self.name}]")

    # -- the Batch thread --------------------------------------------------------------------

    def _loop(self) -> None:
        # Nothing may end this thread while the backend is open: every job it watches would
        # wait for ever. A round that fails (or whose handling fails: a log call, the pool's
        # pushback) is tried again after a backoff, and the jobs are watched on.
        while not self._closed.is_set():
            self._wake.wait(self.settings.poll_seconds + self._backoff)
            self._wake.clear()
            if self._closed.is_set():
                return
            try:
                self._turn()
            except BaseException:
                with contextlib.suppress(BaseException):
                    log.exception("AWS Batch round failed", backend=self.name)

    def _turn(self) -> None:
        try:
            self._round()
            self._backoff = 0.0
        except _Throttled as throttled:
            self._backoff = min(60.0, max(1.0, self._backoff * 2))
            log.warning(
                "AWS Batch throttles: pushing back",
                backend=self.name,
                call=throttled.what,
                seconds=self._backoff,
            )
            if self.settings.pool:
                self.context.pushback({self.settings.pool: self._backoff})

    def _round(self) -> None:
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            if job.cancelled and not job.terminated:
                self._terminate(job)
        arrays: dict[int, _Array] = {}
        for job in jobs:
            if job.state != "submit" or job.cancelled:
                continue
            if job.array is None:
                self._submit(job)
            else:
                arrays.setdefault(id(job.array), job.array)
        for array in arrays.values():
            self._submit_array(array)
        active = [j for j in jobs if j.state == "active" and not j.cancelled]
        for start in range(0, len(active), DESCRIBE_BATCH):
            self._describe(active[start : start + DESCRIBE_BATCH])

    def _call(self, what: str, function: Any, **kwargs: Any) -> Any:
        try:
            return function(**kwargs)
        except botocore.exceptions.ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _THROTTLING or status == 429:
                raise _Throttled(what) from exc
            raise

    def _take_token(self) -> None:
        if self.settings.pool:
            wait = self.context.take_tokens({self.settings.pool: 1})
            if wait > 0:
                self._closed.wait(wait)

    def _finish(self, job: _Job, status: AttemptStatus) -> None:
        with self._lock:
            job.state = "done"
            job.status = status
        job.attempt.notify(job.attempt.attempt_id)

    # -- submitting --------------------------------------------------------------------------

    def _submit(self, job: _Job) -> None:
        attempt = job.attempt
        try:
            if job.look_up:
                found = self._find(job)
                if found:
                    self._adopted(job, found)
                    return
                job.look_up = False
            definition = self._definition(attempt)
            if job.prepared is None:
                job.prepared = self._command(attempt)
            command, granted = job.prepared
            attempt.record_handle(PENDING + job.name)
            self._take_token()
            response = self._call(
                "SubmitJob",
                self.submitter.submit_job,
                jobName=job.name,
                jobQueue=self.settings.job_queue,
                jobDefinition=definition,
                containerOverrides={
                    "command": command,
                    "environment": self._environment({**attempt.env, **granted}),
                },
                tags={
                    TAG_ATTEMPT: attempt_key(attempt.attempt_id),
                    TAG_EXECUTION: attempt.execution_id,
                },
            )
        except _Throttled:
            raise
        except Exception as exc:
            if _maybe_acted(exc):
                job.tries += 1
                if job.tries < self.settings.api_attempts:
                    job.look_up = True  # the next round looks for it before sending it again
                    self._unclear(job.name, exc)
                    return
            self._finish(job, self._refused(job, exc))
            return
        self._adopted(job, str(response["jobId"]))
        log.info("submitted", backend=self.name, job=job.name, job_id=job.job_id)

    def _submit_array(self, array: _Array) -> None:
        """Submit the array's items still to submit as one array job, or adopt the array job
        an earlier engine process submitted for them (found by name and tag)."""
        indexes = array.indexes or list(range(len(array.jobs)))
        with self._lock:
            children = [
                (job, index)
                for job, index in zip(array.jobs, indexes, strict=True)
                if job.state == "submit" and not job.cancelled
            ]
        jobs = [job for job, _ in children]
        if not jobs:
            return
        name = ""
        try:
            if array.look_up:
                found = self._find_array(array.name)
                if found:
                    for job, index in children:
                        self._adopted(job, child_id(found, index))
                    return
                array.look_up = False  # never submitted: these items go anew
            if len(jobs) == 1:
                jobs[0].array = None
                self._submit(jobs[0])
                return
            attempts = [job.attempt for job in jobs]
            name = array_name_of(attempts)
            definition = self._definition(attempts[0])
            if array.prepared is None or array.prepared[0] != name:
                array.prepared = (name, self._array_command(name, attempts))
            command = array.prepared[1]
            for index, job in enumerate(jobs):
                job.attempt.record_handle(f"{PENDING}{name}{ARRAY_SEPARATOR}{index}")
            self._take_token()
            response = self._call(
                "SubmitJob",
                self.submitter.submit_job,
                jobName=name,
                jobQueue=self.settings.job_queue,
                jobDefinition=definition,
                arrayProperties={"size": len(jobs)},
                containerOverrides={"command": command, "environment": self._environment({})},
                tags={
                    TAG_ARRAY: array_key([a.attempt_id for a in attempts]),
                    TAG_EXECUTION: attempts[0].execution_id,
                },
            )
        except _Throttled:
            raise
        except Exception as exc:
            if _maybe_acted(exc) and array.tries + 1 < self.settings.api_attempts:
                if name:  # SubmitJob was sent: these items, as named, are looked up first
                    array = _Array(name, jobs, True, list(range(len(jobs))), array.tries)
                    self._group(array)
                array.tries += 1
                self._unclear(name or array.name, exc)
                return
            for job in jobs:
                job.tries = array.tries + 1 if _maybe_acted(exc) else 0
                self._finish(job, self._refused(job, exc))
            return
        array_id = str(response["jobId"])
        for index, job in enumerate(jobs):
            self._adopted(job, child_id(array_id, index))
        log.info(
            "submitted an array job", backend=self.name, job=name, job_id=array_id, size=len(jobs)
        )

    def _find_array(self, name: str) -> str:
        """The id of the array job of this name that carries our tag, if one was submitted."""
        self._take_token()
        listed = self._call(
            "ListJobs",
            self.batch.list_jobs,
            jobQueue=self.settings.job_queue,
            filters=[{"name": "JOB_NAME", "values": [name]}],
        )
        # Children (`<id>:<i>`) share their array job's name: only array jobs are asked about.
        ids = [s["jobId"] for s in listed.get("jobSummaryList", []) if ":" not in s["jobId"]]
        ours: list[dict[str, Any]] = []
        for start in range(0, len(ids), DESCRIBE_BATCH):
            self._take_token()
            described = self._call(
                "DescribeJobs", self.batch.describe_jobs, jobs=ids[start : start + DESCRIBE_BATCH]
            )
            ours += [
                d
                for d in described["jobs"]
                if d.get("tags", {}).get(TAG_ARRAY, "")[:12] == name[-12:]
            ]
        ours.sort(key=lambda d: d.get("createdAt", 0))
        return str(ours[0]["jobId"]) if ours else ""

    def _adopted(self, job: _Job, job_id: str) -> None:
        """Follow the job `job_id` for `job`, and record its id. Followed even when the id
        cannot be recorded (the database failing): the provisional handle recorded before
        the submit lets a later engine find the job, and submitting it again would make a
        second one."""
        with self._lock:
            job.job_id, job.state = job_id, "active"
        try:
            job.attempt.record_handle(job_id)
        except Exception as exc:
            log.warning(
                "could not record the job's id: a later engine finds it by name and tag",
                backend=self.name,
                job=job.name,
                job_id=job_id,
                error=str(exc),
            )

    def _unclear(self, name: str, exc: Exception) -> None:
        log.warning(
            "SubmitJob failed without a clear answer: the job is looked up by name and tag "
            "before it is sent again",
            backend=self.name,
            job=name,
            error=str(exc),
        )

    def _refused(self, job: _Job, exc: Exception) -> AttemptStatus:
        if isinstance(exc, ValueError):  # a bad resource quantity, no image: the user's
            return AttemptStatus(
                AttemptPhase.FAILED, error=AttemptError("BadTask", str(exc), "user", False)
            )
        what = f"job {job.name}" if job.array is None else f"the array job of {job.name}"
        message = f"cannot submit {what} to queue '{self.settings.job_queue}': "
        if isinstance(exc, (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)):
            section = f"[backends.{self.name}]"
            message += batch_failure(
                self.batch,
                section,
                exc,
                "batch:SubmitJob, batch:ListJobs, batch:DescribeJobs, "
                "batch:DescribeJobDefinitions and batch:RegisterJobDefinition",
            )
            if isinstance(exc, botocore.exceptions.ClientError) and "queue" in str(exc).lower():
                message += f" (fix job_queue in {section}; `taskfabric plugins check` checks it)"
        else:
            message += str(exc)
        if job.tries:
            message += (
                f" (tried {job.tries} times; if a SubmitJob reached Batch after all, its job "
                f"{job.name}, or for a map its array job, may be in the queue)"
            )
        return AttemptStatus(
            AttemptPhase.FAILED, error=AttemptError("SubmitFailed", message, "system", True)
        )

    def _find(self, job: _Job) -> str:
        """The id of this attempt's job if one was submitted: by name, then by tag."""
        return self._find_named(job.name, job.attempt.attempt_id)

    def _find_named(self, name: str, attempt_id: str) -> str:
        """The id of the job `name` tagged as attempt `attempt_id`'s, "" when none."""
        self._take_token()
        listed = self._call(
            "ListJobs",
            self.batch.list_jobs,
            jobQueue=self.settings.job_queue,
            filters=[{"name": "JOB_NAME", "values": [name]}],
        )
        ids = [s["jobId"] for s in listed.get("jobSummaryList", [])]
        if not ids:
            return ""
        self._take_token()
        described = self._call("DescribeJobs", self.batch.describe_jobs, jobs=ids[:100])
        key = attempt_key(attempt_id)
        ours = [d for d in described["jobs"] if d.get("tags", {}).get(TAG_ATTEMPT) == key]
        ours.sort(key=lambda d: d.get("createdAt", 0))
        return str(ours[0]["jobId"]) if ours else ""

    def _image(self, attempt: TaskAttempt) -> str:
        image = attempt.task.container_image or self.settings.image
        if not image:
            raise ValueError(
                f"task '{attempt.task.id.name}' names no container image: set `image` in "
                f"[backends.{self.name}] or @task(container_image=...)"
            )
        return image

    def _definition(self, attempt: TaskAttempt) -> str:
        """The ARN of the job definition of the attempt's task version: registered once per
        image, resources, role and environment (a name holding their hash)."""
        spec = {
            "image": self._image(attempt),
            "resourceRequirements": resources_of(attempt.task, self.settings),
            "environment": [{"name": k, "value": v} for k, v in sorted(self.settings.env.items())],
            "command": [self.settings.python, "-m", "taskfabric.execute"],
        }
        if self.settings.job_role_arn:
            spec["jobRoleArn"] = self.settings.job_role_arn
        digest = hashlib.sha256(
            json.dumps([spec, attempt.task.id.version], sort_keys=True).encode()
        ).hexdigest()[:16]
        readable = _NAME_CHARS.sub("-", attempt.task.id.name).strip("-")[:80]
        name = f"tf-{readable}-{digest}"
        with self._lock:
            known = self._definitions.get(name)
        if known:
            return known
        self._take_token()
        found = self._call(
            "DescribeJobDefinitions",
            self.batch.describe_job_definitions,
            jobDefinitionName=name,
            status="ACTIVE",
        )["jobDefinitions"]
        if found:
            arn = str(max(found, key=lambda d: d["revision"])["jobDefinitionArn"])
        else:
            # No retry strategy: the core owns retries. No timeout: the core owns timeouts.
            self._take_token()
            arn = str(
                self._call(
                    "RegisterJobDefinition",
                    self.batch.register_job_definition,
                    jobDefinitionName=name,
                    type="container",
                    containerProperties=spec,
                    tags={"taskfabric.task": readable},
                )["jobDefinitionArn"]
            )
            log.info("job definition registered", backend=self.name, name=name, arn=arn)
        with self._lock:
            self._definitions[name] = arn
        return arn

    def _template_uri(self, attempt: TaskAttempt) -> str:
        folder = self.context.store.uri("executions", attempt.execution_id)
        return f"{folder}/nodes/{node_key(attempt.node_id)}/task-{attempt.attempt}.pb"

    def _grants_uri(self, attempt: TaskAttempt) -> str:
        folder = self.context.store.uri("executions", attempt.execution_id)
        return f"{folder}/nodes/{node_key(attempt.node_id)}/grants-{attempt.attempt}.json"

    def _presigned(self) -> S3BlobStore | None:
        """The store whose access jobs get presigned, or None when they use credentials."""
        store = self.context.store
        if self.settings.blob_access != "presigned" or not isinstance(store, S3BlobStore):
            return None
        return store

    def _grant(self, attempt: TaskAttempt, template_uri: str) -> dict[str, str]:
        """The job's access to its attempt's blobs, as environment variables: `{}` with
        credentials; else the grants document written for it, and a presigned URL of it."""
        store = self._presigned()
        if store is None:
            return {}
        url = grant_attempt(
            store,
            attempt,
            template_uri,
            self._grants_uri(attempt),
            default_seconds=self.settings.grant_seconds,
        )
        return {GRANTS_ENV: url}

    def _command(self, attempt: TaskAttempt) -> tuple[list[str], dict[str, str]]:
        """The job's command, and the environment that grants it its blobs."""
        template_uri = self._template_uri(attempt)
        self.context.store.put_bytes(template_uri, attempt.task.SerializeToString())
        command = [
            self.settings.python, "-m", "taskfabric.execute",
            "--task-template", template_uri,
            "--inputs", attempt.inputs_uri,
            "--outputs", attempt.outputs_uri,
            "--error", attempt.error_uri,
            "--raw-prefix", attempt.raw_prefix,
        ]  # fmt: skip
        return command, self._grant(attempt, template_uri)

    def _array_command(self, name: str, attempts: list[TaskAttempt]) -> list[str]:
        """The command of every child of the array job: its item runner, given the manifest
        (written with the items' one task template). With presigned access the manifest is
        given as a presigned URL, and each item's environment holds its own grants: a child
        can read its siblings' grants (the same map of the same execution), nothing else."""
        store = self.context.store
        folder = store.uri("executions", attempts[0].execution_id, "arrays", name)
        template_uri, manifest_uri = f"{folder}/task.pb", f"{folder}/items.json"
        store.put_bytes(template_uri, attempts[0].task.SerializeToString())
        envs = [{**a.env, **self._grant(a, template_uri)} for a in attempts]
        store.put_bytes(manifest_uri, manifest_bytes(template_uri, attempts, envs))
        presigned = self._presigned()
        if presigned is not None:
            timeout = attempts[0].task.timeout.ToTimedelta().total_seconds()
            seconds = grant_seconds(timeout, self.settings.grant_seconds)
            manifest_uri = presigned.presign_get(manifest_uri, seconds)
        return [self.settings.python, "-m", "taskfabric_aws.array_item", manifest_uri]

    def _environment(self, extra: dict[str, str]) -> list[dict[str, str]]:
        """The job's environment: `pass_env`, the S3 endpoint, then `extra` (an attempt's)."""
        env = {k: os.environ[k] for k in self.settings.pass_env if k in os.environ}
        store = self.context.store
        presigned = self.settings.blob_access == "presigned"
        if isinstance(store, S3BlobStore) and store.settings.endpoint_url and not presigned:
            # taskfabric-execute in the job finds the same S3 through boto3's variable.
            env.setdefault("AWS_ENDPOINT_URL_S3", store.settings.endpoint_url)
        env.update(extra)
        return [{"name": k, "value": v} for k, v in sorted(env.items())]

    # -- following jobs ----------------------------------------------------------------------

    def _describe(self, jobs: list[_Job]) -> None:
        self._take_token()
        described = self._call(
            "DescribeJobs", self.batch.describe_jobs, jobs=[j.job_id for j in jobs]
        )
        by_id = {d["jobId"]: d for d in described.get("jobs", [])}
        for job in jobs:
            found = by_id.get(job.job_id)
            if found is None:
                self._finish(
                    job,
                    AttemptStatus(
                        AttemptPhase.FAILED,
                        error=AttemptError(
                            "Interrupted", f"AWS Batch knows no job {job.job_id} any more", "system"
                        ),
                    ),
                )
                continue
            try:
                self._update(job, found)
            except _Throttled:
                raise
            except Exception as exc:
                # One job whose update fails must neither stop the others of the batch nor,
                # failing again each round, leave its attempt waiting for ever once it ended.
                self._update_failed(job, found, exc)

    def _update_failed(self, job: _Job, found: dict[str, Any], exc: Exception) -> None:
        with contextlib.suppress(Exception):
            log.warning("could not follow a job", job=job.name, error=f"{exc!r}"[:500])
        if str(found.get("status", "")) in _ACTIVE:
            return  # watched again next round
        message = f"could not read how AWS Batch job {job.name} ({job.job_id}) ended: {exc!r}"
        error = AttemptError("BatchJobUnreadable", message[:2000], "system", True)
        self._finish(job, AttemptStatus(AttemptPhase.FAILED, error=error))

    def _update(self, job: _Job, found: dict[str, Any]) -> None:
        stream = (found.get("container") or {}).get("logStreamName") or ""
        state = str(found.get("status", ""))
        if state in _ACTIVE:
            links = [self._logs.console_link(stream)] if stream else []
            changed = stream != job.log_stream
            with self._lock:
                job.log_stream = stream
                job.status = AttemptStatus(AttemptPhase.RUNNING, log_links=links)
            if changed:
                job.attempt.notify(job.attempt.attempt_id)
            if stream and self._logs.due(job.log_cursor, self.settings.follow_logs_seconds):
                self._logs.read(job.log_cursor, stream, self._log_path(job.attempt))
            return
        job.log_stream = stream
        self._finish(job, self._ended(job, found))

    def _log_path(self, attempt: TaskAttempt) -> Path:
        return live_log_path(
            self.context.work_root, attempt.execution_id, attempt.node_id, attempt.attempt
        )

    def _ended(self, job: _Job, found: dict[str, Any]) -> AttemptStatus:
        attempt = job.attempt
        links: list[LogLink] = []
        log_path = self._log_path(attempt)
        if job.log_stream:
            links.append(self._logs.console_link(job.log_stream))
            self._logs.read(job.log_cursor, job.log_stream, log_path)
            kept = keep_log(
                self.context.store, attempt.execution_id, attempt.node_id, attempt.attempt, log_path
            )
            if kept is not None:
                links.insert(0, LogLink(LOG_LINK_NAME, kept))
        store = self.context.store
        try:
            if store.exists(attempt.error_uri):
                error = execution_pb2.ExecutionError()
                error.ParseFromString(store.get_bytes(attempt.error_uri))
                return AttemptStatus(
                    AttemptPhase.FAILED, error=AttemptError.from_proto(error), log_links=links
                )
            if found["status"] == "SUCCEEDED" and store.exists(attempt.outputs_uri):
                refused = None
                if self._presigned() is not None:
                    # A job that reaches its own blobs only must not name another's in its
                    # outputs: the next task would be granted it.
                    refused = check_outputs(attempt, store.get_bytes(attempt.outputs_uri))
                if refused is not None:
                    return AttemptStatus(AttemptPhase.FAILED, error=refused, log_links=links)
                return AttemptStatus(
                    AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri, log_links=links
                )
        except Exception as exc:
            log.warning("could not read the job's documents", job=job.name, error=str(exc))
        finally:
            self._revoke(job)
        container = found.get("container") or {}
        why = found.get("statusReason") or container.get("reason") or ""
        code = container.get("exitCode")
        if found["status"] == "SUCCEEDED":
            how = "succeeded without writing its outputs"
        else:
            how = "failed" + (f" with exit code {code}" if code is not None else "")
        message = f"AWS Batch job {job.name} ({job.job_id}) {how}"
        if why:
            message += f": {why}"
        last = tail(log_path)
        if last:
            message += f"; last lines of its log:\n{last}"
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("BatchJobFailed", message, "system", True),
            log_links=links,
        )

    def _revoke(self, job: _Job) -> None:
        """Delete the ended job's grants document: its URLs would work until they expire
        (a presigned URL cannot be revoked), but nothing can learn them any more."""
        if self._presigned() is None:
            return
        try:
            self.context.store.delete(self._grants_uri(job.attempt))
        except Exception as exc:
            log.warning("could not delete the job's grants", job=job.name, error=str(exc))

    def _submitted_id(self, job: _Job) -> str:
        """The id of the job an earlier engine process may have submitted for `job` (its handle
        was provisional: killed between SubmitJob and recording the id), else ""."""
        if job.array is not None and job.array.look_up:
            found = self._find_array(job.array.name)
            if not found:
                return ""
            indexes = job.array.indexes or list(range(len(job.array.jobs)))
            return child_id(found, indexes[job.array.jobs.index(job)])
        return self._find(job) if job.look_up else ""

    def _terminate(self, job: _Job) -> None:
        if not job.job_id and job.state == "submit":
            # Cancelled before this process submitted it or looked it up: a job may exist.
            try:
                job.job_id = self._submitted_id(job)
            except _Throttled:
                raise
            except Exception as exc:
                log.warning(
                    "could not look the job up to terminate it", job=job.name, error=str(exc)
                )
                return
        if job.job_id:
            self._take_token()
            try:
                self._call(
                    "TerminateJob",
                    self.batch.terminate_job,
                    jobId=job.job_id,
                    reason="cancelled by taskfabric (abort or timeout)",
                )
            except _Throttled:
                raise
            except Exception as exc:
                log.warning("could not terminate", job=job.name, error=str(exc))
                return
            log.info("terminated", backend=self.name, job=job.name, job_id=job.job_id)
        with self._lock:
            job.terminated = True
            job.state = "done"
            if job.released and self._jobs.get(job.attempt.attempt_id) is job:
                del self._jobs[job.attempt.attempt_id]
                return
        job.attempt.notify(job.attempt.attempt_id)
