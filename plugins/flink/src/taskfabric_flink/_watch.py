"""The cluster's view of the attempts whose client runs, from the REST API.

While an attempt's client process lives, its jobs are read from the JobManager (`GET
/jobs/overview`, one call for every attempt of the backend, every `job_poll_seconds`), by
their name (`taskfabric-<attempt id>`). A status read of the attempt then says which jobs it
has and in which state, and links each job's page; when that changes, the attempt is
notified, so that the engine records the links while the attempt runs. A cancel or a timeout
stops those same jobs through the REST API (`FlinkClusterBackend.after_kill`), and the links
recorded lead to the job's page, with the state the JobManager gives it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from taskfabric.logs import get_logger
from taskfabric.plugin_api import LogLink, TaskAttempt
from taskfabric_flink._environment import job_name
from taskfabric_flink._rest import TERMINAL_STATES, FlinkRest, FlinkRestError

__all__ = ["ClusterView", "LiveJobs", "job_links"]

log = get_logger("taskfabric.flink")


def job_links(rest_url: str, jobs: list[tuple[str, str]]) -> list[LogLink]:
    """A `flink-job` link to the page of each (jid, state)."""
    return [
        LogLink(
            "flink-job",
            f"{rest_url}/#/job/{'completed' if state in TERMINAL_STATES else 'running'}/{jid}",
        )
        for jid, state in jobs
    ]


@dataclass(frozen=True)
class ClusterView:
    """An attempt's jobs as the JobManager last gave them: (jid, state) in submission order,
    or the error of the REST API that did not answer."""

    jobs: tuple[tuple[str, str], ...] = ()
    error: str = ""
    read: bool = False

    def message(self) -> str:
        if self.error:
            return f"the Flink REST API does not answer ({self.error})"
        if not self.read:
            return "the attempt's Flink client runs; its jobs are not read yet"
        if not self.jobs:
            return "the attempt's Flink client runs; no job of it on the cluster yet"
        states = ", ".join(f"{jid} {state}" for jid, state in self.jobs)
        return f"Flink job{'s' if len(self.jobs) > 1 else ''} on the cluster: {states}"


@dataclass
class _Watched:
    attempt: TaskAttempt
    view: ClusterView = field(default_factory=ClusterView)


class LiveJobs:
    """Reads the jobs of the watched attempts every `every` seconds on one thread."""

    def __init__(self, backend: str, rest: FlinkRest, every: float) -> None:
        self.backend = backend
        self.rest = rest
        self.every = every
        self._watched: dict[str, _Watched] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, attempt: TaskAttempt) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            self._watched.setdefault(attempt.attempt_id, _Watched(attempt))
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"flink-jobs-{self.backend}", daemon=True
                )
                self._thread.start()

    def forget(self, attempt_id: str) -> None:
        with self._lock:
            self._watched.pop(attempt_id, None)

    def view(self, attempt_id: str) -> ClusterView | None:
        """The attempt's jobs as last read; None for an attempt not watched."""
        with self._lock:
            watched = self._watched.get(attempt_id)
            return None if watched is None else watched.view

    def refresh(self) -> None:
        """Read the cluster's jobs once; notify each attempt whose view changed."""
        with self._lock:
            watched = list(self._watched.values())
        if not watched:
            return
        try:
            jobs: list[dict[str, Any]] = self.rest.jobs()
            error = ""
        except FlinkRestError as exc:
            jobs, error = [], str(exc)
        by_name: dict[str, list[dict[str, Any]]] = {}
        for job in sorted(jobs, key=lambda j: int(j.get("start-time", 0))):
            by_name.setdefault(str(job.get("name", "")), []).append(job)
        changed: list[TaskAttempt] = []
        with self._lock:
            for item in watched:
                if self._watched.get(item.attempt.attempt_id) is not item:
                    continue  # forgotten meanwhile
                if error:  # the jobs last seen stay
                    view = ClusterView(item.view.jobs, error=error, read=item.view.read)
                else:
                    mine = by_name.get(job_name(item.attempt.attempt_id), [])
                    view = ClusterView(
                        tuple((str(j["jid"]), str(j.get("state", ""))) for j in mine), read=True
                    )
                if view != item.view:
                    item.view = view
                    changed.append(item.attempt)
        for attempt in changed:
            attempt.notify(attempt.attempt_id)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.refresh()
            except Exception:  # never let the thread die: the views would stop moving
                log.exception("cannot read the attempts' jobs", backend=self.backend)

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            thread = self._thread
            self._watched.clear()
        if thread is not None:
            thread.join(timeout=10)
