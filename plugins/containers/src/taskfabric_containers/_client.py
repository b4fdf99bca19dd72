"""The few calls of the Docker Engine API that the backend makes, through the `docker`
library (podman serves the same API: `podman system service --time=0 unix:///PATH`)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import docker
import docker.errors

from taskfabric_containers._limits import Limits
from taskfabric_containers._mounts import Mount

#: The usual API socket of each driver when neither `url` nor $DOCKER_HOST says.
DEFAULT_URLS = {
    "podman": "unix:///run/podman/podman.sock",
    "docker": "unix:///var/run/docker.sock",
}

ApiError = docker.errors.DockerException


class BuildFailed(docker.errors.DockerException):
    """An image build that failed, with the end of its log."""


def default_url(driver: str) -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_URLS.get(driver, DEFAULT_URLS["docker"])


class ContainerApi:
    """A thread-safe client of one container API (connected on first use)."""

    def __init__(self, url: str, *, timeout: float = 120.0, pool_size: int = 10) -> None:
        self.url = url
        self.timeout = timeout
        self.pool_size = pool_size
        self._client: docker.DockerClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = docker.DockerClient(
                    base_url=self.url,
                    timeout=int(self.timeout),
                    max_pool_size=self.pool_size,
                    version="1.41",
                )
            return self._client

    def version(self) -> str:
        info: dict[str, Any] = self.client.version()
        components = {c.get("Name", ""): c.get("Version", "") for c in info.get("Components", [])}
        name = "podman" if "Podman Engine" in components else "Docker"
        return f"{name} {components.get('Podman Engine') or info.get('Version', '?')}"

    def image_exists(self, image: str) -> bool:
        try:
            self.client.images.get(image)
        except docker.errors.ImageNotFound:
            return False
        return True

    def find(self, name: str) -> str | None:
        """The id of the container named `name`, or None."""
        try:
            container = self.client.containers.get(name)
        except docker.errors.NotFound:
            return None
        return str(container.id)

    def create(
        self,
        *,
        name: str,
        image: str,
        entrypoint: Sequence[str],
        command: Sequence[str],
        env: Mapping[str, str],
        mounts: Sequence[Mount],
        labels: Mapping[str, str],
        network: str,
        limits: Limits,
        user: str,
    ) -> str:
        kwargs: dict[str, Any] = {}
        if limits.memory:
            # No swap beyond the limit: a task over its memory is killed, not slowed down.
            kwargs["mem_limit"] = limits.memory
            kwargs["memswap_limit"] = limits.memory
        if limits.nano_cpus:
            kwargs["nano_cpus"] = limits.nano_cpus
        try:
            container = self.client.containers.create(
                image,
                list(command),
                entrypoint=list(entrypoint),
                name=name,
                environment=dict(env),
                volumes={str(m.source): m.docker() for m in mounts},
                labels=dict(labels),
                network_mode=network,
                user=user,
                # The task needs no capability and gains none (no setuid program works).
                cap_drop=["ALL"],
                security_opt=["no-new-privileges"],
                detach=True,
                **kwargs,
            )
        except docker.errors.APIError as exc:
            if exc.status_code == 409:  # created meanwhile by another call: that one is ours
                found = self.find(name)
                if found is not None:
                    return found
            raise
        return str(container.id)

    def start(self, container_id: str) -> None:
        self.client.api.start(container_id)

    def follow_logs(self, container_id: str, path: Path) -> None:
        """Write the container's output to `path` as it comes, until the container ends."""
        stream = self.client.api.logs(
            container_id, stdout=True, stderr=True, stream=True, follow=True
        )
        with path.open("wb") as out:
            for chunk in stream:
                out.write(chunk)
                out.flush()

    def wait(self, container_id: str) -> tuple[int, bool]:
        """(exit code, whether the engine says it was OOM-killed) once the container ended."""
        result = self.client.api.wait(container_id, timeout=None)
        code = int(result.get("StatusCode", -1))
        state = self.client.api.inspect_container(container_id).get("State", {})
        return code, bool(state.get("OOMKilled"))

    def memory_limit(self, container_id: str) -> int:
        try:
            info = self.client.api.inspect_container(container_id)
        except docker.errors.APIError:
            return 0
        return int(info.get("HostConfig", {}).get("Memory") or 0)

    def stop(self, container_id: str, grace_seconds: float) -> None:
        try:
            self.client.api.stop(container_id, timeout=max(0, round(grace_seconds)))
        except docker.errors.NotFound:
            return

    def remove(self, container_id: str) -> None:
        try:
            self.client.api.remove_container(container_id, force=True)
        except docker.errors.NotFound:
            return

    def import_image(self, tarball: Path, ref: str, env: Mapping[str, str]) -> None:
        """Import a root file system tarball as image `ref`, with `env` set in it."""
        repository, _, tag = ref.rpartition(":")
        changes = [f"ENV {k}={v}" for k, v in env.items()]
        with tarball.open("rb") as data:
            answer = self.client.api.import_image_from_data(
                data, repository=repository, tag=tag, changes=changes
            )
        # podman 4 tags an import `latest` whatever the tag asked: tag the id it answers.
        image_id = ""
        for line in str(answer).splitlines():
            with contextlib.suppress(ValueError):
                image_id = str(json.loads(line).get("id") or json.loads(line).get("status"))
        if image_id.startswith("sha256:"):
            self.client.api.tag(image_id, repository, tag)
        if not self.image_exists(ref):
            raise docker.errors.ImageNotFound(f"importing {tarball} did not give image {ref}")
        with contextlib.suppress(docker.errors.APIError):
            if image_id and f"{repository}:latest" != ref:
                latest = self.client.images.get(f"{repository}:latest")
                if latest.id == image_id:
                    self.client.api.remove_image(f"{repository}:latest")

    def build(self, context: Path, ref: str, network: str, *, no_cache: bool = False) -> None:
        """Build the Dockerfile of folder `context` as image `ref`; raises with the log's end."""
        lines: list[str] = []
        try:
            for chunk in self.client.api.build(
                path=str(context),
                tag=ref,
                rm=True,
                forcerm=True,
                network_mode=network,
                nocache=no_cache,
                decode=True,
                timeout=None,
            ):
                if "stream" in chunk:
                    lines.extend(str(chunk["stream"]).splitlines())
                if "error" in chunk:
                    tail = "\n".join(line for line in lines[-20:] if line.strip())
                    raise BuildFailed(f"building {ref} failed: {chunk['error']}\n{tail}")
        except docker.errors.BuildError as exc:
            raise BuildFailed(f"building {ref} failed: {exc.msg}") from None
        if not self.image_exists(ref):
            raise BuildFailed(f"the build ended without image {ref}: " + "\n".join(lines[-20:]))

    def push(self, ref: str, remote: str) -> None:
        repository, _, tag = remote.rpartition(":")
        self.client.api.tag(ref, repository, tag)
        for chunk in self.client.api.push(repository, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                raise docker.errors.APIError(f"push of {remote} failed: {chunk['error']}")

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


__all__ = ["DEFAULT_URLS", "ApiError", "BuildFailed", "ContainerApi", "default_url"]
