"""A small JSON-over-HTTP job service, the remote engine of docs/plugins/examples/backend_remote.py.

Run as `python jobs_service.py PORT_FILE`: it listens on 127.0.0.1 (a free port, written to
PORT_FILE) and runs each job's command as a process group of its own, outliving any client.
`GET /jobs` lists every job ever created (the tests count them).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class Jobs:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.jobs: dict[str, dict[str, Any]] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def create(
        self, name: str, command: list[str], env: dict[str, str]
    ) -> tuple[int, dict[str, Any]]:
        with self.lock:
            for job in self.jobs.values():
                if job["name"] == name:
                    return 409, job
            job_id = f"job-{next(self.ids)}"
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env={**os.environ, **env},
                start_new_session=True,
            )
            job = {"id": job_id, "name": name, "state": "RUNNING", "exit_code": None}
            self.jobs[job_id], self.procs[job_id] = job, proc
        threading.Thread(target=self._wait, args=(job_id, proc), daemon=True).start()
        return 201, job

    def _wait(self, job_id: str, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self.lock:
            job = self.jobs[job_id]
            job["exit_code"] = code
            if job["state"] == "RUNNING":
                job["state"] = "SUCCEEDED" if code == 0 else "FAILED"

    def delete(self, job_id: str) -> int:
        with self.lock:
            job, proc = self.jobs.get(job_id), self.procs.get(job_id)
            if job is None or proc is None:
                return 404
            if job["state"] == "RUNNING":
                job["state"] = "CANCELLED"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        return 204


JOBS = Jobs()


class Handler(BaseHTTPRequestHandler):
    def _answer(self, code: int, body: Any = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self._answer(*JOBS.create(body["name"], body["command"], body.get("env", {})))

    def do_GET(self) -> None:
        if self.path == "/jobs":
            with JOBS.lock:
                self._answer(200, list(JOBS.jobs.values()))
            return
        with JOBS.lock:
            job = JOBS.jobs.get(self.path.removeprefix("/jobs/"))
            job = dict(job) if job is not None else None
        self._answer(200, job) if job is not None else self._answer(404, {"error": "no job"})

    def do_DELETE(self) -> None:
        self._answer(JOBS.delete(self.path.removeprefix("/jobs/")))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    port_file = Path(sys.argv[1])
    port_file.with_suffix(".tmp").write_text(str(server.server_address[1]))
    port_file.with_suffix(".tmp").rename(port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
