"""Jobs whose client is gone, followed through the cluster's REST API.

After a `kill -9` of the engine *and* of an attempt's client (its machine lost, say), the
attempt's jobs may still run on the session cluster. The flink-cluster backend adopts them on
resume, by their name (`taskfabric-<attempt id>`): it follows their state through
`GET /jobs/<id>` until they end, cancels them through the API if the attempt is cancelled, and
reads their outcome back as the attempt's. Nothing is submitted again for that attempt.

The outcome: a failed job fails the attempt with its root cause from the JobManager's
exception history; a job cancelled outside taskfabric fails it as a system error; finished
jobs complete a task that returns nothing (its sinks hold what it made). A task that returns
values cannot get them back: they were to be computed by the client that was killed, so the
attempt fails with `FlinkClientLost` (retryable: a retry is a new attempt, with a job of its
own).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from taskfabric.core.v1 import types_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    LogLink,
    TaskAttempt,
)
from taskfabric_flink._errors import root_cause
from taskfabric_flink._rest import TERMINAL_STATES, FlinkRest, FlinkRestError

__all__ = ["AdoptedJobs", "adopted_outcome"]

log = get_logger("taskfabric.flink")


def _job_links(rest_url: str, job: dict[str, Any]) -> list[LogLink]:
    jid = str(job["jid"])
    state = str(job.get("state", ""))
    page = "completed" if state in TERMINAL_STATES else "running"
    links = [LogLink("flink-job", f"{rest_url}/#/job/{page}/{jid}")]
    if state == "FAILED":
        links.append(LogLink("flink-exceptions", f"{rest_url}/jobs/{jid}/exceptions"))
    return links


def adopted_outcome(
    attempt: TaskAttempt, jobs: list[dict[str, Any]], rest: FlinkRest, links: list[LogLink]
) -> AttemptStatus:
    """The attempt's outcome from its ended jobs (see the module docstring)."""
    for job in jobs:
        links = [*links, *_job_links(rest.url, job)]
    jids = ", ".join(str(j["jid"]) for j in jobs)
    failed = [j for j in jobs if j.get("state") == "FAILED"]
    if failed:
        jid = str(failed[0]["jid"])
        code, summary = "FlinkJobFailed", f"job {jid} failed"
        try:
            history = rest.exceptions(jid)
        except FlinkRestError as exc:
            summary += f" (its exception history is not readable: {exc})"
        else:
            cause = root_cause(str(history.get("root-exception", "")))
            if cause is not None:
                code, summary = cause[0], f"job {jid} failed: {cause[1]}"
        message = f"{summary} (the attempt's client was lost; its job was followed on the cluster)"
        return AttemptStatus(
            AttemptPhase.FAILED, error=AttemptError(code, message), log_links=links
        )
    cancelled = [j for j in jobs if j.get("state") == "CANCELED"]
    if cancelled:
        message = (
            f"job {cancelled[0]['jid']} of the attempt was cancelled on the cluster, not by "
            "taskfabric, while its client was lost"
        )
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError("FlinkJobCancelled", message, kind="system", retryable=True),
            log_links=links,
        )
    if not attempt.task.interface.outputs:
        # All finished, and the task returns nothing: what it made is in its sinks.
        return AttemptStatus(
            AttemptPhase.SUCCEEDED, outputs=types_pb2.LiteralMap(), log_links=links
        )
    names = ", ".join(o.name for o in attempt.task.interface.outputs)
    message = (
        f"the attempt's client was killed while its job ({jids}) ran; the job was followed on "
        f"the cluster and FINISHED (its sinks hold what it wrote, and it is not run again for "
        f"this attempt), but the task's outputs ({names}) were to be computed by that client "
        "and are lost with it. A retry runs the task again as a new attempt"
    )
    return AttemptStatus(
        AttemptPhase.FAILED,
        error=AttemptError("FlinkClientLost", message, kind="system", retryable=True),
        log_links=links,
    )


@dataclass
class _Adopted:
    attempt: TaskAttempt
    jids: list[str]
    links: list[LogLink]
    status: AttemptStatus
    cancelled: bool = False
    stop: threading.Event = field(default_factory=threading.Event)


class AdoptedJobs:
    """The attempts whose jobs a backend follows without a client (one thread each)."""

    def __init__(self, backend: str, rest: FlinkRest, interval: float) -> None:
        self.backend = backend
        self.rest = rest
        self.interval = interval
        self._lock = threading.Lock()
        self._adopted: dict[str, _Adopted] = {}

    def adopt(self, attempt: TaskAttempt, jobs: list[dict[str, Any]], links: list[LogLink]) -> None:
        jids = [str(j["jid"]) for j in jobs]
        running_links = [*links]
        for job in jobs:
            running_links += _job_links(self.rest.url, job)
        entry = _Adopted(
            attempt, jids, links, AttemptStatus(AttemptPhase.RUNNING, log_links=running_links)
        )
        with self._lock:
            self._adopted[attempt.attempt_id] = entry
        log.info(
            "adopted the jobs of an attempt whose client is gone; following them through the "
            "REST API",
            backend=self.backend,
            attempt_id=attempt.attempt_id,
            jobs=jids,
        )
        attempt.notify(attempt.attempt_id)  # the engine records the links
        threading.Thread(
            target=self._follow, args=(entry,), name=f"flink-adopted-{jids[0]}", daemon=True
        ).start()

    def _follow(self, entry: _Adopted) -> None:
        attempt_id = entry.attempt.attempt_id
        while not entry.stop.is_set():
            try:
                jobs = [self.rest.job(jid) for jid in entry.jids]
            except FlinkRestError as exc:  # the JobManager restarting: ask again
                log.warning("cannot read an adopted job", backend=self.backend, error=str(exc))
                entry.stop.wait(self.interval)
                continue
            if all(j.get("state") in TERMINAL_STATES for j in jobs):
                status = adopted_outcome(entry.attempt, jobs, self.rest, entry.links)
                with self._lock:
                    if entry.cancelled or self._adopted.get(attempt_id) is not entry:
                        return
                    entry.status = status
                log.info(
                    "adopted jobs ended",
                    backend=self.backend,
                    attempt_id=attempt_id,
                    states=[j.get("state") for j in jobs],
                    phase=status.phase.value,
                )
                entry.attempt.notify(attempt_id)
                return
            entry.stop.wait(self.interval)

    def status(self, attempt_id: str) -> AttemptStatus | None:
        with self._lock:
            entry = self._adopted.get(attempt_id)
            return entry.status if entry is not None else None

    def cancel(self, attempt_id: str, cancel_job: Callable[[str], None]) -> bool:
        """Cancel the attempt's adopted jobs; False when it has none."""
        with self._lock:
            entry = self._adopted.pop(attempt_id, None)
        if entry is None:
            return False
        entry.cancelled = True
        entry.stop.set()
        for jid in entry.jids:
            try:
                cancel_job(jid)
            except FlinkRestError as exc:
                log.warning("cannot cancel an adopted job", jid=jid, error=str(exc))
        return True

    def release(self, attempt_id: str) -> None:
        with self._lock:
            entry = self._adopted.pop(attempt_id, None)
        if entry is not None:
            entry.stop.set()

    def close(self) -> None:
        with self._lock:
            entries = list(self._adopted.values())
            self._adopted.clear()
        for entry in entries:
            entry.stop.set()
