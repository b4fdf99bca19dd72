"""A real HTTP service for tests: it enforces its own quota and counts what it saw.

`QuotaServer` listens on 127.0.0.1 (a thread per connection) and answers:

- `GET /geocode?q=ADDRESS` -> `{"query": ..., "results": [{"name", "lat", "lon"}]}`;
- `GET|POST /echo` -> `{"method", "path", "args", "headers", "json"}`;
- `GET /status/CODE` -> that status, with `{"error": "status CODE"}`;
- a job API: `POST /jobs` (honours `Idempotency-Key`) -> `{"id"}`, `GET /jobs/ID` ->
  `{"id", "state", "error"}`, `GET /jobs/ID/result` -> the result, `DELETE /jobs/ID` cancels.
  A job runs `job_seconds`, then succeeds (or fails when its body has `"fail": true`).

Beyond `max_concurrent` requests at once or `max_per_second` started within a second it
answers 429 (with `Retry-After: retry_after` when set). `script` queues forced answers
`(status, headers, body)` for the next requests. `stats` says what it saw.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Job", "QuotaServer", "Stats"]


@dataclass
class Stats:
    requests: int = 0
    accepted: int = 0
    rejected: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    #: monotonic start times of accepted requests
    started: list[float] = field(default_factory=list)
    #: monotonic arrival time of every request, in order
    arrived: list[float] = field(default_factory=list)
    #: monotonic time and status of every answer, in order
    answered: list[tuple[float, int]] = field(default_factory=list)
    #: (method, path, headers) of every request, in order
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)

    def max_started_within(self, window: float) -> int:
        """The most accepted requests that started within any `window` seconds."""
        times = sorted(self.started)
        best, lo = 0, 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best


@dataclass
class Job:
    id: str
    body: Any
    key: str | None
    created: float
    state: str = "running"
    cancelled_at: float | None = None


class QuotaServer:
    def __init__(
        self,
        *,
        max_concurrent: int | None = None,
        max_per_second: int | None = None,
        retry_after: float | None = None,
        delay: float = 0.0,
        job_seconds: float = 1.0,
        submit_delay: float = 0.0,
        token: str | None = None,
    ) -> None:
        self.max_concurrent = max_concurrent
        self.max_per_second = max_per_second
        self.retry_after = retry_after
        self.delay = delay
        self.job_seconds = job_seconds
        self.submit_delay = submit_delay  # seconds between creating a job and answering
        self.token = token  # when set, requests without `Authorization: Bearer <token>` get 401
        self.stats = Stats()
        self.jobs: dict[str, Job] = {}
        self.script: deque[tuple[int, dict[str, str], Any]] = deque()
        self.lock = threading.Lock()
        self._window: deque[float] = deque()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                server._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> QuotaServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the quota ---------------------------------------------------------------------------

    def _admit(self, now: float) -> bool:
        s = self.stats
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        if self.max_concurrent is not None and s.in_flight >= self.max_concurrent:
            return False
        if self.max_per_second is not None and len(self._window) >= self.max_per_second:
            return False
        self._window.append(now)
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        s.accepted += 1
        s.started.append(now)
        return True

    # -- answering ---------------------------------------------------------------------------

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length) if length else b""
        parts = urlsplit(h.path)
        headers = {k.lower(): v for k, v in h.headers.items()}
        with self.lock:
            self.stats.requests += 1
            self.stats.arrived.append(time.monotonic())
            self.stats.seen.append((h.command, parts.path, headers))
            forced = self.script.popleft() if self.script else None
            admitted = forced is None and self._admit(time.monotonic())
            if forced is None and not admitted:
                self.stats.rejected += 1
        if forced is not None:
            self._send(h, *forced)
            return
        if not admitted:
            extra = {"Retry-After": f"{self.retry_after:g}"} if self.retry_after else {}
            self._send(h, 429, extra, {"error": "quota exceeded"})
            return
        try:
            if self.delay:
                time.sleep(self.delay)
            if self.token is not None and headers.get("authorization") != f"Bearer {self.token}":
                self._send(h, 401, {}, {"error": "bad token", "got": headers.get("authorization")})
                return
            status, body = self._route(h.command, parts.path, parse_qs(parts.query), raw, headers)
            self._send(h, status, {}, body)
        finally:
            with self.lock:
                self.stats.in_flight -= 1

    def _send(
        self, h: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: Any
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        with self.lock:
            self.stats.answered.append((time.monotonic(), status))
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (its timeout): what a real service sees too

    def _route(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        raw: bytes,
        headers: dict[str, str],
    ) -> tuple[int, Any]:
        args = {k: v[0] for k, v in query.items()}
        body = json.loads(raw) if raw else None
        if path == "/geocode":
            q = args.get("q", "")
            if not q:
                return 400, {"error": "q is required"}
            return 200, {"query": q, "results": [{"name": q, "lat": len(q) * 1.5, "lon": -2.25}]}
        if path == "/echo":
            return 200, {
                "method": method,
                "path": path,
                "args": args,
                "headers": headers,
                "json": body,
            }
        if path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            return code, {"error": f"status {code}"}
        if path == "/jobs" and method == "POST":
            return self._submit(body, headers.get("idempotency-key"))
        if path.startswith("/jobs/"):
            rest = path.removeprefix("/jobs/").split("/")
            with self.lock:
                job = self.jobs.get(rest[0])
                if job is None:
                    return 404, {"error": f"no job {rest[0]}"}
                self._advance(job)
                if method == "DELETE":
                    if job.state == "running":
                        job.state = "cancelled"
                        job.cancelled_at = time.monotonic()
                    return 200, {"id": job.id, "state": job.state}
                if len(rest) > 1 and rest[1] == "result":
                    if job.state != "succeeded":
                        return 409, {"error": f"job {job.id} is {job.state}"}
                    return 200, {"id": job.id, "output": job.body, "count": len(self.jobs)}
                error = "the job's input was rejected" if job.state == "failed" else None
                return 200, {"id": job.id, "state": job.state, "error": error}
        return 404, {"error": f"no route {method} {path}"}

    def _submit(self, body: Any, key: str | None) -> tuple[int, Any]:
        with self.lock:
            if key is not None:
                for job in self.jobs.values():
                    if job.key == key:
                        return 200, {"id": job.id, "state": job.state, "replayed": True}
            job = Job(uuid.uuid4().hex[:12], body, key, time.monotonic())
            self.jobs[job.id] = job
        if self.submit_delay:
            time.sleep(self.submit_delay)
        return 201, {"id": job.id, "state": job.state}

    def _advance(self, job: Job) -> None:
        if job.state == "running" and time.monotonic() - job.created >= self.job_seconds:
            failed = isinstance(job.body, dict) and job.body.get("fail")
            job.state = "failed" if failed else "succeeded"
