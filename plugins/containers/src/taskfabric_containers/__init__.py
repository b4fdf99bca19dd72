"""taskfabric-containers: tasks in containers of their own images, and images built from a spec.

```toml
[backends.podman]
driver = "podman"                      # or "docker": the same backend, a Docker daemon
url = "unix:///run/podman/podman.sock"
image = "localhost/taskfabric-task:..."

[task_types]
python = "podman"
```

`@task(container_image=..., resources=Resources(cpu="1", memory="256Mi"))` picks the image and
the container's limits. `taskfabric images build SPEC` builds an image from an `ImageSpec`.
See docs/plugins/containers.md.
"""

from typing import TYPE_CHECKING, Any

from taskfabric_containers._images import BuildResult, ImageBuildError, ImageSpec, build_image
from taskfabric_containers._settings import ContainerSettings

if TYPE_CHECKING:
    from taskfabric_containers._backend import ContainerBackend, DockerBackend, PodmanBackend

__version__ = "0.1.0"

__all__ = [
    "BuildResult",
    "ContainerBackend",
    "ContainerSettings",
    "DockerBackend",
    "ImageBuildError",
    "ImageSpec",
    "PodmanBackend",
    "build_image",
]

_BACKENDS = ("ContainerBackend", "DockerBackend", "PodmanBackend")


def __getattr__(name: str) -> Any:
    """The backends, imported on first use: they load the Docker client, which neither a task
    module that declares an ImageSpec nor `taskfabric --help` needs."""
    if name in _BACKENDS:
        from taskfabric_containers import _backend

        return getattr(_backend, name)
    raise AttributeError(f"module 'taskfabric_containers' has no attribute {name!r}")
