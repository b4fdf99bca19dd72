"""Fixtures of the containers integration tests: one podman API service for the run (started
here with the settings of `taskfabric_containers.testing`, or $TASKFABRIC_TEST_PODMAN_URL),
the task image built once from a spec (the core and pandas; cached across runs by its content
hash), and the plugin registered by hand."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_containers import DockerBackend, ImageSpec, PodmanBackend, build_image
from taskfabric_containers._client import ContainerApi
from taskfabric_containers._names import LABEL_EXECUTION
from taskfabric_containers.testing import PodmanMissing, free_port, image_registry, podman_service

REPO = Path(__file__).resolve().parents[2]
#: The image the tests' tasks run in: the core from this tree, with pandas for dataframes.
TASK_IMAGE = ImageSpec(name="taskfabric-it", packages=["./core[pandas]"], root=str(REPO))


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    return taskfabric_home


#: Where the session's image registry listens (the podman service knows it as insecure).
REGISTRY_PORT = free_port()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real image registry (Debian's docker-registry) on 127.0.0.1, for the session."""
    try:
        with image_registry(tmp_path_factory.mktemp("registry"), REGISTRY_PORT) as where:
            yield where
    except PodmanMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the containers suite needs an image registry under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def podman_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get("TASKFABRIC_TEST_PODMAN_URL")
    if url:
        yield url
        return
    try:
        folder = tmp_path_factory.mktemp("podman")
        insecure = [f"127.0.0.1:{REGISTRY_PORT}"]
        with podman_service(folder, insecure_registries=insecure) as started:
            yield started
    except PodmanMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"the containers suite needs podman under CI: {exc}")
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def api(podman_url: str) -> Iterator[ContainerApi]:
    client = ContainerApi(podman_url, timeout=600)
    started = time.time()
    yield client
    # Tests keep their containers (remove = false) to inspect them: remove this run's.
    for found in client.client.api.containers(all=True, filters={"label": LABEL_EXECUTION}):
        if found.get("Created", 0) >= started - 1:
            client.remove(found["Id"])
    client.close()


@pytest.fixture(scope="session")
def task_image(api: ContainerApi) -> str:
    return build_image(TASK_IMAGE, api, print).ref


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "podman", PodmanBackend)
    plugins.add_driver(BACKENDS_GROUP, "docker", DockerBackend)
    with use_plugins(plugins):
        yield plugins
