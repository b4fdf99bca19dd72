"""`[backends.<name>]` of drivers `podman` and `docker`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskfabric.plugin_api import BackendSettings

_MOUNT = re.compile(r"^(/[^:]*):(/[^:]*)(?::(ro|rw))?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _valid_mounts(value: list[str]) -> list[str]:
    for mount in value:
        if not _MOUNT.match(mount):
            raise ValueError(
                f"mount {mount!r} is not HOST_PATH:CONTAINER_PATH[:ro|rw] with absolute "
                "paths, e.g. '/srv/reference:/reference:ro'"
            )
    return value


def _valid_env_names(value: dict[str, str] | list[str]) -> dict[str, str] | list[str]:
    for name in value:
        if not _ENV_NAME.match(name):
            raise ValueError(f"{name!r} is not an environment variable name")
    return value


def _valid_network(value: str | None) -> str | None:
    if value is not None and not value:
        raise ValueError('network must not be empty: write "none", "host" or a name')
    return value


class ContainerSettings(BackendSettings):
    """How attempts run in containers: where the container API is, which image by default,
    the environment, mounts and network every attempt's container gets, and its limits."""

    #: The Docker Engine API: `unix:///PATH` or `tcp://HOST:PORT`. Empty: `$DOCKER_HOST`, else
    #: the driver's usual socket (podman: /run/podman/podman.sock, docker:
    #: /var/run/docker.sock).
    url: str = ""
    #: The image of tasks that name none (`@task(container_image=...)`, `register --image`).
    image: str = ""
    #: The container's network: "none" (no network, the default), "host", "bridge" or a
    #: network's name.
    network: str = "none"
    #: Environment variables set in every container.
    env: dict[str, str] = {}
    #: Names of the engine's environment variables passed on to every container when set
    #: (credentials and the endpoint of an object store, say).
    pass_env: list[str] = []
    #: Extra bind mounts, "HOST_PATH:CONTAINER_PATH[:ro|rw]" (read-only unless ":rw").
    mounts: list[str] = []
    #: How the task's own code reaches the container: "mount" copies the `.py` files of the
    #: task's code folder (the folder its module is imported from) into a read-only snapshot
    #: mounted at the same path; "image" expects the image to contain it.
    code: Literal["mount", "image"] = "mount"
    #: The Python of the image that runs `taskfabric-execute`.
    python: str = "python3"
    #: Limits of tasks that declare none (`@task(limits=Resources(...))` wins): e.g. "1",
    #: "500m" CPUs; "512Mi", "2Gi" memory. Empty: no limit.
    cpu: str = ""
    memory: str = ""
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = Field(default=5.0, ge=0)
    #: Remove each container once the engine has recorded its attempt's end. Set false to
    #: keep them for inspection (`podman ps -a --filter label=taskfabric.execution_id=ID`).
    remove: bool = True
    #: Seconds an API call may take before it fails (waiting for a container is not bounded).
    api_timeout: float = Field(default=120.0, gt=0)
    #: Extra labels on every container.
    labels: dict[str, str] = {}
    #: What a task may set for itself with `@task(backend_options={"podman": {...}})` (the
    #: key is the driver's name, "podman" or "docker"): "env" (variables added over `env`),
    #: "network" (in place of `network`), "mounts" (added to `mounts`). Only "env" unless
    #: the operator allows more: a task's own network or mounts weaken its isolation.
    task_overrides: list[Literal["env", "network", "mounts"]] = ["env"]

    _mounts = field_validator("mounts")(_valid_mounts)
    _env_names = field_validator("env", "pass_env")(_valid_env_names)
    _network = field_validator("network")(_valid_network)


class TaskOverrides(BaseModel):
    """What one task sets for its container (`@task(backend_options={"podman": {...}})`)."""

    model_config = ConfigDict(extra="forbid")

    env: dict[str, str] = {}
    network: str | None = None
    mounts: list[str] = []

    _mounts = field_validator("mounts")(_valid_mounts)
    _env_names = field_validator("env")(_valid_env_names)
    _network = field_validator("network")(_valid_network)


def parse_mount(mount: str) -> tuple[str, str, bool]:
    """(host path, container path, read_only) of a validated `mounts` entry."""
    match = _MOUNT.match(mount)
    assert match is not None
    return match.group(1), match.group(2), match.group(3) != "rw"


__all__ = ["ContainerSettings", "TaskOverrides", "check_task_overrides", "parse_mount"]


def check_task_overrides(options: dict[str, object], where: str) -> TaskOverrides:
    """A task's `backend_options` entry, validated as the backend's own settings are."""
    try:
        return TaskOverrides.model_validate(options)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ValueError(f"{where}: backend_options: {problems}") from exc
