"""Test kit: a podman API service of the test run's own, with the settings that work on
machines like CI's (runc, cgroupfs, no network, file events, explicit ulimits), and the
image spec of the integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path

from taskfabric_containers._client import ContainerApi

#: containers.conf of the test service. crun fails on cgroup v1 hosts and podman's default
#: ulimits need CAP_SYS_RESOURCE, which CI's sandbox lacks: runc and explicit ulimits work.
CONTAINERS_CONF = """\
[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanMissing(RuntimeError):
    """podman is not installed or its service does not answer."""


@contextlib.contextmanager
def podman_service(
    folder: Path, *, start_timeout: float = 60.0, insecure_registries: Sequence[str] = ()
) -> Iterator[str]:
    """Run `podman system service` on a socket in `folder` with `CONTAINERS_CONF`; yield
    its URL (`unix:///...`); stop it at the end. `insecure_registries` (HOST:PORT) are spoken
    to over plain HTTP (a test registry on 127.0.0.1)."""
    podman = shutil.which("podman")
    if podman is None:
        raise PodmanMissing("podman is not installed: apt-get install -y podman runc")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    sock = folder / "podman.sock"
    url = f"unix://{sock}"
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
    if insecure_registries:
        registries = folder / "registries.conf"
        registries.write_text(
            "".join(
                f'[[registry]]\nlocation = "{where}"\ninsecure = true\n\n'
                for where in insecure_registries
            ),
            encoding="utf-8",
        )
        env["CONTAINERS_REGISTRIES_CONF"] = str(registries)
    with (folder / "podman-service.log").open("ab") as log:
        proc = subprocess.Popen(
            [podman, "system", "service", "--time=0", url],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            # conmon leaves files (an `oom` marker) in the service's folder: not the caller's.
            cwd=folder,
            start_new_session=True,
        )
    api = ContainerApi(url, timeout=10)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                api.version()
                break
            except Exception as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise PodmanMissing(
                        f"podman system service did not answer on {url}: {exc}; see "
                        f"{folder / 'podman-service.log'}"
                    ) from exc
                time.sleep(0.2)
        yield url
    finally:
        api.close()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


#: The distribution registry of Debian's `docker-registry` package.
REGISTRY_BINARY = "docker-registry"


@contextlib.contextmanager
def image_registry(folder: Path, port: int, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run a real OCI distribution registry (Debian's `docker-registry`) on 127.0.0.1:`port`
    over plain HTTP, storing in `folder`; yield `127.0.0.1:PORT`; stop it at the end."""
    binary = shutil.which(REGISTRY_BINARY)
    if binary is None:
        raise PodmanMissing(
            "the image registry is not installed: apt-get install -y docker-registry"
        )
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "registry.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'storage'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n",
        encoding="utf-8",
    )
    where = f"127.0.0.1:{port}"
    with (folder / "registry.log").open("ab") as log:
        proc = subprocess.Popen(
            [binary, "serve", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            try:
                with urllib.request.urlopen(f"http://{where}/v2/", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise PodmanMissing(
                        f"the image registry did not answer on {where}: {exc}; see "
                        f"{folder / 'registry.log'}"
                    ) from exc
            time.sleep(0.1)
        yield where
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


__all__ = [
    "CONTAINERS_CONF",
    "PodmanMissing",
    "free_port",
    "image_registry",
    "podman_service",
]
