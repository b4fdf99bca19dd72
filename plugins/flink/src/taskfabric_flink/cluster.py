"""A standalone Flink session cluster (one JobManager, one TaskManager) on 127.0.0.1, started
from the PyFlink installation's own scripts (`bin/start-cluster.sh`), for tests, CI and a
developer's machine.

    python -m taskfabric_flink.cluster start --dir /tmp/flink [--port 8081] [--slots 4]
    python -m taskfabric_flink.cluster status --dir /tmp/flink
    python -m taskfabric_flink.cluster stop --dir /tmp/flink

or, in Python (what the tests use):

    with session_cluster(folder, slots=4) as cluster:
        cluster.rest_url        # http://127.0.0.1:<port>
        cluster.rest.overview()

The folder holds the cluster's configuration (a copy of PyFlink's `conf/` bound to
127.0.0.1 on free ports), its logs and its pid files, so clusters in different folders never
meet. The TaskManager runs Python UDF workers with the given Python (default: this one).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from taskfabric_flink._environment import python_bin_first
from taskfabric_flink._rest import FlinkRest, FlinkRestError

__all__ = ["SessionCluster", "flink_home", "free_port", "main", "session_cluster"]


def flink_home() -> Path:
    """The Flink distribution inside the installed PyFlink (bin/, conf/, lib/)."""
    import pyflink

    return Path(pyflink.__file__).resolve().parent


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _java_opts(home: Path) -> str:
    """The JVM options PyFlink's own config.yaml gives (module opens Java 17 needs)."""
    for line in (home / "conf" / "config.yaml").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("all:"):
            return stripped.removeprefix("all:").strip()
    return ""


def _config_yaml(home: Path, port: int, rpc_port: int, slots: int, python: str) -> str:
    opts = _java_opts(home)
    return f"""\
env:
  java:
    opts:
      all: {opts}
jobmanager:
  bind-host: 127.0.0.1
  rpc:
    address: 127.0.0.1
    port: {rpc_port}
  memory:
    process:
      size: 1024m
taskmanager:
  bind-host: 127.0.0.1
  host: 127.0.0.1
  numberOfTaskSlots: {slots}
  memory:
    process:
      size: 1728m
parallelism:
  default: 1
rest:
  address: 127.0.0.1
  bind-address: 127.0.0.1
  port: {port}
python:
  executable: {python}
"""


@dataclass
class SessionCluster:
    folder: Path
    rest_url: str

    @property
    def rest(self) -> FlinkRest:
        return FlinkRest(self.rest_url)

    @property
    def conf_dir(self) -> Path:
        return self.folder / "conf"

    def pids(self) -> list[int]:
        out: list[int] = []
        for path in sorted((self.folder / "pids").glob("*.pid")):
            with contextlib.suppress(OSError, ValueError):
                out += [int(line) for line in path.read_text().split()]
        return out

    def running_jobs(self) -> list[dict[str, object]]:
        return [
            j for j in self.rest.jobs() if j.get("state") not in ("FINISHED", "FAILED", "CANCELED")
        ]

    def wait_for_no_jobs(self, timeout: float = 60.0) -> list[dict[str, object]]:
        """Wait until no job runs; the jobs still running at the timeout."""
        deadline = time.monotonic() + timeout
        jobs = self.running_jobs()
        while jobs and time.monotonic() < deadline:
            time.sleep(0.5)
            jobs = self.running_jobs()
        return jobs


def _env(folder: Path, python: str) -> dict[str, str]:
    env = python_bin_first(dict(os.environ), python)
    env.update(
        FLINK_CONF_DIR=str(folder / "conf"),
        FLINK_LOG_DIR=str(folder / "log"),
        FLINK_PID_DIR=str(folder / "pids"),
    )
    env.pop("SUBMIT_ARGS", None)
    return env


def _logs(folder: Path) -> str:
    parts = [p.read_text("utf-8", "replace")[-3000:] for p in sorted((folder / "log").glob("*"))]
    return "\n".join(parts)


def start(
    folder: Path,
    *,
    port: int = 0,
    slots: int = 4,
    python: str = "",
    timeout: float = 180.0,
) -> SessionCluster:
    """Start a cluster whose files are in `folder`; returns once a TaskManager has
    registered its slots."""
    home = flink_home()
    folder.mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    port = port or free_port()
    conf = folder / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(home / "conf", conf)
    (conf / "config.yaml").write_text(
        _config_yaml(home, port, free_port(), slots, python), encoding="utf-8"
    )
    (conf / "masters").write_text(f"127.0.0.1:{port}\n", encoding="utf-8")
    (conf / "workers").write_text("127.0.0.1\n", encoding="utf-8")
    for sub in ("log", "pids"):
        (folder / sub).mkdir(exist_ok=True)
    cluster = SessionCluster(folder, f"http://127.0.0.1:{port}")
    (folder / "cluster.json").write_text(json.dumps({"rest_url": cluster.rest_url}))
    env = _env(folder, python)
    subprocess.run(
        ["bash", str(home / "bin" / "start-cluster.sh")],
        env=env,
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        timeout=120,
    )
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            overview = cluster.rest.overview()
            if overview.get("taskmanagers", 0) >= 1 and overview.get("slots-total", 0) >= slots:
                return cluster
            last = overview
        except FlinkRestError as exc:
            last = exc
        if not any(_alive(pid) for pid in cluster.pids()):
            break
        time.sleep(0.5)
    stop(folder)
    raise RuntimeError(f"the Flink cluster in {folder} did not get ready: {last}\n{_logs(folder)}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(folder: Path, grace: float = 30.0) -> None:
    """Stop the cluster of `folder` (PyFlink's stop-cluster.sh), then kill what is left of
    the processes its pid files name."""
    cluster = SessionCluster(folder, "")
    pids = cluster.pids()
    if (folder / "conf").exists():
        subprocess.run(
            ["bash", str(flink_home() / "bin" / "stop-cluster.sh")],
            env=_env(folder, sys.executable),
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    deadline = time.monotonic() + grace
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def session_cluster(folder: Path, *, slots: int = 4, python: str = "") -> Iterator[SessionCluster]:
    """A running cluster for the block, stopped at its end."""
    cluster = start(folder, slots=slots, python=python)
    try:
        yield cluster
    finally:
        stop(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m taskfabric_flink.cluster",
        description="Start, inspect or stop a standalone Flink session cluster on 127.0.0.1.",
    )
    parser.add_argument("action", choices=["start", "status", "stop"])
    parser.add_argument("--dir", required=True, type=Path, help="the cluster's folder")
    parser.add_argument("--port", type=int, default=0, help="REST port (default: a free one)")
    parser.add_argument("--slots", type=int, default=4, help="task slots of the TaskManager")
    parser.add_argument("--python", default="", help="Python of the UDF workers")
    args = parser.parse_args(argv)
    folder = args.dir.resolve()
    if args.action == "start":
        cluster = start(folder, port=args.port, slots=args.slots, python=args.python)
        print(cluster.rest_url)
        return 0
    if args.action == "stop":
        stop(folder)
        return 0
    try:
        url = json.loads((folder / "cluster.json").read_text())["rest_url"]
        print(json.dumps(FlinkRest(url).overview()))
    except (OSError, ValueError, KeyError, FlinkRestError) as exc:
        print(f"no cluster answers for {folder}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
