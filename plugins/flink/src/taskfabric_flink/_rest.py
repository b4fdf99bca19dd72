"""A small client of a Flink cluster's REST API (the JobManager's, e.g. http://host:8081):
the cluster's overview, jobs by name, cancel, stop with a savepoint, exception history."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

__all__ = ["TERMINAL_STATES", "FlinkRest", "FlinkRestError"]

#: Job states after which a job does nothing more.
TERMINAL_STATES = frozenset({"FINISHED", "FAILED", "CANCELED"})


class FlinkRestError(RuntimeError):
    """The REST API did not answer, or answered with an error."""


class FlinkRest:
    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")[:500]
            raise FlinkRestError(f"{method} {self.url}{path}: HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise FlinkRestError(f"{method} {self.url}{path}: {reason}") from exc
        return json.loads(raw) if raw.strip() else None

    def overview(self) -> dict[str, Any]:
        """`/overview`: taskmanagers, slots-total, slots-available, jobs-running, version."""
        data: dict[str, Any] = self.call("GET", "/overview")
        return data

    def jobs(self) -> list[dict[str, Any]]:
        """Every job the cluster knows (`/jobs/overview`): jid, name, state, times."""
        data = self.call("GET", "/jobs/overview")
        return list(data.get("jobs", []))

    def job(self, jid: str) -> dict[str, Any]:
        data: dict[str, Any] = self.call("GET", f"/jobs/{jid}")
        return data

    def jobs_named(self, name: str) -> list[dict[str, Any]]:
        return [job for job in self.jobs() if job.get("name") == name]

    def cancel(self, jid: str) -> None:
        self.call("PATCH", f"/jobs/{jid}?mode=cancel")

    def exceptions(self, jid: str) -> dict[str, Any]:
        data: dict[str, Any] = self.call("GET", f"/jobs/{jid}/exceptions")
        return data

    def stop_with_savepoint(self, jid: str, directory: str, timeout: float = 120.0) -> str:
        """Stop the job with a savepoint in `directory`; the savepoint's path."""
        trigger = self.call("POST", f"/jobs/{jid}/stop", {"targetDirectory": directory})
        request_id = trigger["request-id"]
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("GET", f"/jobs/{jid}/savepoints/{request_id}")
            if status.get("status", {}).get("id") == "COMPLETED":
                operation = status.get("operation", {})
                if "failure-cause" in operation:
                    cause = operation["failure-cause"].get("stack-trace", "")
                    raise FlinkRestError(f"the savepoint of job {jid} failed: {cause[:500]}")
                return str(operation["location"])
            if time.monotonic() > deadline:
                raise FlinkRestError(f"the savepoint of job {jid} did not complete in {timeout}s")
            time.sleep(0.5)
