# docs/plugins/examples/backend_remote.py
"""A remote backend with re-attach: each attempt is a job of a JSON-over-HTTP job service.

The service runs commands where the blob store is reachable and keeps every job until it is
deleted:

    POST   /jobs  {"name": ..., "command": [...],  201 {"id": ...}; 409 {"id": ...} when a job
                   "env": {...}}                   of that name exists
    GET    /jobs/ID                                200 {"state": "RUNNING" | "SUCCEEDED" |
                                                   "FAILED" | "CANCELLED", ...}; 404
    DELETE /jobs/ID                                204: stopped

A job runs `taskfabric-execute`, which writes the outputs or an error document to the store.
"""

from __future__ import annotations

import json
import sys
import threading
import urllib.error
import urllib.request
from typing import Any, ClassVar

from taskfabric.backends import node_key
from taskfabric.core.v1 import execution_pb2
from taskfabric.plugin_api import (
    RUNNING,
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendContext,
    BackendSettings,
    CheckResult,
    TaskAttempt,
)

__all__ = ["JobsBackend", "JobsSettings"]

#: A provisional handle, recorded before the job exists: the job's name.
PENDING = "pending:"


class JobsSettings(BackendSettings):
    url: str  # the job service, e.g. http://127.0.0.1:8765
    python: str = sys.executable  # the Python that runs taskfabric-execute on its machine


class JobsBackend(Backend[JobsSettings]):
    driver: ClassVar[str] = "jobs"
    settings_model: ClassVar[type[BackendSettings]] = JobsSettings
    poll_interval: ClassVar[float | None] = 0.2  # the engine asks; no notify
    reattaches: ClassVar[bool] = True

    def __init__(self, name: str, settings: JobsSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self._attempts: dict[str, tuple[TaskAttempt, str]] = {}  # attempt_id -> (it, job id)
        self._lock = threading.Lock()

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.settings.url + path, data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def submit(self, attempt: TaskAttempt) -> None:
        with self._lock:
            if attempt.attempt_id in self._attempts:
                return  # submitted before: an attempt must never run twice
        job_id = attempt.handle
        if not job_id or job_id.startswith(PENDING):
            # Recorded before the job exists: an engine killed before it records the job's
            # id leaves the name, and the next one finds the job by it (409 below).
            attempt.record_handle(PENDING + attempt.attempt_id)
            job_id = self._create(attempt)
            attempt.record_handle(job_id)
        # With a job id handle the job may run on or have ended: poll() tells which.
        with self._lock:
            self._attempts[attempt.attempt_id] = (attempt, job_id)

    def _create(self, attempt: TaskAttempt) -> str:
        prefix = self.context.store.uri("executions", attempt.execution_id)
        key = node_key(attempt.node_id)
        template_uri = f"{prefix}/nodes/{key}/task-{attempt.attempt}.pb"
        self.context.store.put_bytes(template_uri, attempt.task.SerializeToString())
        command = [
            self.settings.python, "-m", "taskfabric.execute",
            "--task-template", template_uri,
            "--inputs", attempt.inputs_uri,
            "--outputs", attempt.outputs_uri,
            "--error", attempt.error_uri,
            "--raw-prefix", attempt.raw_prefix,
        ]  # fmt: skip
        # attempt.env: variables the task's process must get (the engine's pool channel).
        body = {"name": attempt.attempt_id, "command": command, "env": attempt.env}
        code, job = self._call("POST", "/jobs", body)
        if code not in (201, 409):  # 409: an earlier engine process created it: it is ours
            raise RuntimeError(f"the job service refused the job ({code}): {job}")
        return str(job["id"])

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            attempt, job_id = self._attempts.get(attempt_id, (None, ""))
        if attempt is None:
            return RUNNING
        code, job = self._call("GET", f"/jobs/{job_id}")
        if code == 200 and job["state"] == "RUNNING":
            return RUNNING
        outcome = self._documents(attempt)
        if outcome is not None:
            return outcome
        if code == 404:  # the service lost the job without an outcome
            error = AttemptError("Interrupted", f"job {job_id} is gone", "system")
        else:
            error = AttemptError("JobFailed", f"job {job_id} ended {job['state']}", "system")
        return AttemptStatus(AttemptPhase.FAILED, error=error)

    def _documents(self, attempt: TaskAttempt) -> AttemptStatus | None:
        """The outcome taskfabric-execute wrote, if it did."""
        store = self.context.store
        if store.exists(attempt.error_uri):
            error = execution_pb2.ExecutionError()
            error.ParseFromString(store.get_bytes(attempt.error_uri))
            return AttemptStatus(AttemptPhase.FAILED, error=AttemptError.from_proto(error))
        if store.exists(attempt.outputs_uri):
            return AttemptStatus(AttemptPhase.SUCCEEDED, outputs_uri=attempt.outputs_uri)
        return None

    def cancel(self, attempt_id: str) -> None:
        with self._lock:
            _, job_id = self._attempts.pop(attempt_id, (None, ""))
        if job_id:
            self._call("DELETE", f"/jobs/{job_id}")

    def abandon(self, attempt_id: str, handle: str) -> None:
        # A job an earlier engine process started that no run will re-attach to: stop it.
        # A provisional handle names no job for sure (it may never have been created).
        if handle and not handle.startswith(PENDING):
            self._call("DELETE", f"/jobs/{handle}")

    def release(self, attempt_id: str) -> None:
        with self._lock:
            self._attempts.pop(attempt_id, None)

    def check(self) -> CheckResult:
        try:
            code, _ = self._call("GET", "/jobs/none")
        except OSError as exc:
            return CheckResult(False, f"the job service {self.settings.url} does not answer: {exc}")
        return CheckResult(code == 404, f"the job service {self.settings.url} answers")
