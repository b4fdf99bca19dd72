"""A real standalone Spark cluster (one master, one worker) on 127.0.0.1, for tests.

    with standalone_cluster(tmp_path, cores=2, memory="2g") as cluster:
        cluster.master_url      # spark://127.0.0.1:<port>
        cluster.webui_url       # http://127.0.0.1:<port>
        cluster.state()         # the master's /json/ document
        cluster.running_apps()  # applications that have not ended

Both are JVMs started from the pyspark installation (`bin/spark-class`) on free ports, in
their own process groups, with logs, pids and work folders under the given folder, and are
stopped when the block ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskfabric_spark._session import java_env, spark_home

__all__ = ["StandaloneCluster", "free_port", "standalone_cluster"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StandaloneCluster:
    master_url: str
    webui_url: str
    folder: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.webui_url}/json/", timeout=10) as response:
            data: dict[str, Any] = json.loads(response.read())
        return data

    def running_apps(self) -> list[dict[str, Any]]:
        """Applications the master has not seen end (WAITING or RUNNING)."""
        return list(self.state().get("activeapps", []))

    def wait_for_no_apps(self, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Wait until no application runs; the ones still running at the timeout."""
        deadline = time.monotonic() + timeout
        apps = self.running_apps()
        while apps and time.monotonic() < deadline:
            time.sleep(0.5)
            apps = self.running_apps()
        return apps


def _wait_ready(cluster: StandaloneCluster, workers: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        for proc in cluster.processes:
            if proc.poll() is not None:
                logs = "\n".join(
                    p.read_text("utf-8", "replace")[-2000:] for p in cluster.folder.glob("*.out")
                )
                raise RuntimeError(f"a Spark daemon exited with {proc.returncode}:\n{logs}")
        try:
            state = cluster.state()
            alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if state.get("status") == "ALIVE" and len(alive) >= workers:
                return
            last = state
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = exc
        time.sleep(0.3)
    raise TimeoutError(f"the standalone cluster was not ready after {timeout}s: {last}")


def _stop(processes: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    for proc in reversed(processes):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in reversed(processes):
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def standalone_cluster(
    folder: Path, *, cores: int = 2, memory: str = "2g", timeout: float = 90.0
) -> Iterator[StandaloneCluster]:
    """A master and one worker on 127.0.0.1, stopped (process groups killed) at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    env = java_env()
    env.update(
        SPARK_LOCAL_IP="127.0.0.1",
        SPARK_LOG_DIR=str(folder / "logs"),
        SPARK_PID_DIR=str(folder / "pids"),
        SPARK_WORKER_DIR=str(folder / "work"),
        SPARK_HOME=str(spark_home()),
    )
    spark_class = str(spark_home() / "bin" / "spark-class")
    port, webui, worker_webui = free_port(), free_port(), free_port()
    cluster = StandaloneCluster(
        master_url=f"spark://127.0.0.1:{port}",
        webui_url=f"http://127.0.0.1:{webui}",
        folder=folder,
    )
    commands = {
        "master": [
            spark_class, "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1", "--port", str(port), "--webui-port", str(webui),
        ],
        "worker": [
            spark_class, "org.apache.spark.deploy.worker.Worker", cluster.master_url,
            "--host", "127.0.0.1", "--webui-port", str(worker_webui),
            "--cores", str(cores), "--memory", memory, "--work-dir", str(folder / "work"),
        ],
    }  # fmt: skip
    try:
        for name, command in commands.items():
            with (folder / f"{name}.out").open("wb") as out:
                cluster.processes.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env=env,
                        start_new_session=True,
                    )
                )
            if name == "master":
                _wait_ready(cluster, workers=0, timeout=timeout)
        _wait_ready(cluster, workers=1, timeout=timeout)
        yield cluster
    finally:
        _stop(cluster.processes)
