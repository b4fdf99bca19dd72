"""Settings objects users pass to @task."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

from google.protobuf import duration_pb2

from taskfabric.core.v1 import tasks_pb2


def to_timedelta(value: timedelta | float | int | None, what: str) -> timedelta | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a timedelta or a number of seconds, not a bool")
    td = value if isinstance(value, timedelta) else timedelta(seconds=float(value))
    if td < timedelta(0):
        raise ValueError(f"{what} must not be negative (got {td})")
    return td


def duration_proto(td: timedelta | None) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    if td is not None:
        d.FromTimedelta(td)
    return d


@dataclass(frozen=True)
class Retry:
    """Retry a failed attempt up to `retries` more times with exponential backoff.

    The wait before retry k (k = 1, 2, ...) is `backoff * multiplier**(k-1)`, capped at
    `max_backoff`. A task waiting to retry holds no slot of any pool.
    """

    retries: int = 0
    backoff: timedelta | float = timedelta(seconds=1)
    multiplier: float = 2.0
    max_backoff: timedelta | float = timedelta(minutes=5)

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0 (got {self.retries})")
        if self.multiplier < 1:
            raise ValueError(f"backoff multiplier must be >= 1 (got {self.multiplier})")

    def to_proto(self) -> tasks_pb2.RetryStrategy:
        return tasks_pb2.RetryStrategy(
            retries=self.retries,
            initial_backoff=duration_proto(to_timedelta(self.backoff, "backoff")),
            backoff_multiplier=self.multiplier,
            max_backoff=duration_proto(to_timedelta(self.max_backoff, "max_backoff")),
        )


@dataclass(frozen=True)
class Cache:
    """Cache a task's outputs by its inputs.

    `version` left empty means the version is derived from the task's source code.
    """

    version: str = ""
    ignored_inputs: Sequence[str] = ()
    ttl: timedelta | float | None = None
    serialize: bool = False

    def to_proto(self) -> tasks_pb2.CacheSettings:
        return tasks_pb2.CacheSettings(
            enabled=True,
            version=self.version,
            ignored_inputs=list(self.ignored_inputs),
            ttl=duration_proto(to_timedelta(self.ttl, "cache ttl")),
            serialize=self.serialize,
        )


@dataclass(frozen=True)
class Resources:
    """Compute resources, in Kubernetes quantity syntax ("500m", "2", "4Gi")."""

    cpu: str | int | float | None = None
    memory: str | None = None
    gpu: str | int | None = None
    ephemeral_storage: str | None = None

    def to_proto(self) -> tasks_pb2.ResourceSpec:
        return tasks_pb2.ResourceSpec(
            cpu="" if self.cpu is None else str(self.cpu),
            memory=self.memory or "",
            gpu="" if self.gpu is None else str(self.gpu),
            ephemeral_storage=self.ephemeral_storage or "",
        )


_IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9.-]*[a-zA-Z0-9])?(?::[0-9]+)?/)?"  # registry[:port]/
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"  # path
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"  # :tag
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"  # @digest
)


@runtime_checkable
class SupportsImageRef(Protocol):
    """An image declared as an object (taskfabric-containers' `ImageSpec`): `image_ref()`
    returns the reference it is built as."""

    def image_ref(self) -> str: ...


def image_ref(image: str | SupportsImageRef) -> str:
    """The reference of `image`: itself, or the `image_ref()` of an image object."""
    if isinstance(image, str):
        return image
    if isinstance(image, SupportsImageRef):
        return image.image_ref()
    raise TypeError(
        f"container_image must be an image reference (str) or an object with an image_ref() "
        f"method such as an ImageSpec, not {type(image).__name__}"
    )


def check_image(image: str) -> str:
    """`image` if it is a container image reference (`[registry[:port]/]path[:tag][@digest]`),
    else ValueError saying what a reference looks like."""
    if not isinstance(image, str) or not image or len(image) > 512 or not _IMAGE.match(image):
        raise ValueError(
            f"container image {image!r} is not an image reference: write "
            "[REGISTRY[:PORT]/]PATH[:TAG][@sha256:DIGEST] in lower case, e.g. "
            "'ghcr.io/acme/etl:3f9c0a1'"
        )
    return image


@dataclass(frozen=True)
class TaskSettings:
    """Everything @task accepts besides the function, normalised."""

    retry: Retry = field(default_factory=Retry)
    timeout: timedelta | None = None
    cache: Cache | None = None
    requests: Resources | None = None
    limits: Resources | None = None
    pools: dict[str, int] = field(default_factory=dict)
    task_type: str = "python"
    container_image: str = ""
    #: Per-task settings of backends, by driver name (see `task(backend_options=...)`).
    backend_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def check_backend_options(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`options` as {driver: {key: JSON value}}, else ValueError saying what is wrong."""
    import json

    checked: dict[str, dict[str, Any]] = {}
    for driver, values in options.items():
        if not isinstance(driver, str) or not driver:
            raise ValueError(
                f"backend_options keys are driver names such as 'podman', not {driver!r}"
            )
        if not isinstance(values, Mapping):
            raise ValueError(
                f"backend_options[{driver!r}] must be a dict of that driver's settings, "
                f"e.g. {{'network': 'bridge'}}, not {type(values).__name__}"
            )
        try:
            checked[driver] = json.loads(json.dumps(dict(values)))
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"backend_options[{driver!r}] must hold JSON values (str, numbers, bools, "
                f"lists, dicts): {exc}"
            ) from exc
    return checked
