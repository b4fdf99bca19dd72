"""Test kit: a podman API service of the test run's own, with the settings that work on
machines like CI's (runc, cgroupfs, no network, file events, explicit ulimits), and the
image spec of the integration tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
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
def podman_service(folder: Path, *, start_timeout: float = 60.0) -> Iterator[str]:
    """Run `podman system service` on a socket in `folder` with `CONTAINERS_CONF`; yield
    its URL (`unix:///...`); stop it at the end."""
    podman = shutil.which("podman")
    if podman is None:
        raise PodmanMissing("podman is not installed: apt-get install -y podman runc")
    folder.mkdir(parents=True, exist_ok=True)
    conf = folder / "containers.conf"
    conf.write_text(CONTAINERS_CONF, encoding="utf-8")
    socket = folder / "podman.sock"
    url = f"unix://{socket}"
    env = dict(os.environ, CONTAINERS_CONF=str(conf))
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


__all__ = ["CONTAINERS_CONF", "PodmanMissing", "podman_service"]
