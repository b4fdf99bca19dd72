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

from typing import TYPE_CHECKING

from taskfabric.lazy import lazy_exports
from taskfabric_containers._images import BuildResult, ImageBuildError, ImageSpec, build_image

if TYPE_CHECKING:
    from taskfabric_containers._backend import ContainerBackend, DockerBackend, PodmanBackend
    from taskfabric_containers._settings import ContainerSettings

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

#: The backends and their settings, imported on first use: they load the Docker client and
#: pydantic, which neither a task module that declares an ImageSpec nor `taskfabric --help`
#: (which imports the `images` command) needs.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ("ContainerBackend", "DockerBackend", "PodmanBackend"), "taskfabric_containers._backend"
        ),
        "ContainerSettings": "taskfabric_containers._settings",
    },
)
