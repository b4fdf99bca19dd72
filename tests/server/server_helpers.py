"""Helpers of the server tests: a real `taskfabric server` process, workflow sources."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from taskfabric.config import Config, load_config
from taskfabric.metadata import MetadataStore
from taskfabric.server import TokenStore

FLOWS = """
import os
import time
from datetime import timedelta

from taskfabric import FixedRate, LaunchPlan, map_task, task, workflow

FACTOR = {factor}


@task
def scale(x: int) -> int:
    print(f"scaling {{x}} by {{FACTOR}}")
    return x * FACTOR


@task
def items(n: int) -> list[int]:
    return list(range(n))


@task
def step(x: int) -> int:
    log = os.environ.get("STEP_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(f"{{x}}\\n")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0")))
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def price(x: int, label: str = "none") -> int:
    return scale(x=x)


@workflow
def fanout(n: int) -> int:
    return total(xs=map_task(step, concurrency=2)(x=items(n=n)))


tick = LaunchPlan(
    "tick",
    price,
    fixed_inputs={{"x": 1}},
    schedule=FixedRate(timedelta(seconds=1)),
    catch_up="all",
    max_catch_up=100,
)
"""


def write_flows(root: Path, factor: int, module: str = "srvflows") -> Path:
    """A source tree with workflows `<module>.price` (x * factor) and `<module>.fanout`, and
    the launch plan `tick` (price with x=1, every second)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(FLOWS.format(factor=factor)))
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(check: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.1)


class ServerProcess:
    """`taskfabric --config CONFIG server` in a process of its own."""

    def __init__(
        self,
        config: Path,
        log: Path,
        *,
        workers: int = 2,
        env: dict[str, str],
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: the server serves HTTPS (its config names the certificate) and this file
        verifies it."""
        self.config = config
        self.log = log
        self.workers = workers
        self.env = env
        self.port = free_port()
        self.ca_file = ca_file
        self.url = f"{'https' if ca_file else 'http'}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(self.config)]
        cmd += ["--log-level", "info", "server", "--port", str(self.port)]
        cmd += ["--workers", str(self.workers)]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **self.env}
            )
        wait_until(self._ready, 120, f"the server on {self.url} (log: {self.log})")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the server exited ({self.proc.returncode}):\n{self.tail()}")
        try:
            verify = ssl.create_default_context(cafile=self.ca_file) if self.ca_file else True
            return httpx.get(self.url + "/healthz", timeout=1, verify=verify).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> int:
        """SIGTERM, and the exit code once it stopped."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Site:
    """A config file and its database, the servers started on it, tokens."""

    def __init__(self, root: Path, database: str | None) -> None:
        self.root = root
        self.config_path = root / "taskfabric.toml"
        # These tests run their tasks on the in-process backend: they declare the site
        # single-tenant (test_isolation.py runs a multi-tenant one).
        text = "[server]\nworkers = 2\nsingle_tenant = true\n"
        if database is not None:
            text += f'\n[metadata]\nurl = "{database}"\n'
        self.config_path.write_text(text)
        self.config: Config = load_config(self.config_path)
        self.servers: list[ServerProcess] = []
        self._metadata = MetadataStore(self.config.metadata_url)
        self.tokens = TokenStore(self._metadata)

    def server(self, *, workers: int = 2, env: dict[str, str] | None = None) -> ServerProcess:
        log = self.root / f"server-{len(self.servers)}.log"
        proc = ServerProcess(self.config_path, log, workers=workers, env=env or {})
        self.servers.append(proc)
        return proc.start()

    def token(self, projects: list[str], role: str, name: str = "") -> str:
        return self.tokens.create(projects=projects, role=role, name=name)[1]

    def close(self) -> None:
        for proc in self.servers:
            if proc.proc is not None and proc.proc.poll() is None:
                proc.stop()
        self._metadata.close()
