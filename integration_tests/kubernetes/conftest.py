"""Fixtures of the Kubernetes integration tests: a real one-node cluster (etcd, kube-apiserver,
kube-scheduler, kube-controller-manager, kubelet with containerd and runc) built from Debian's
source package by `cluster.sh`, the task image built from a spec by the containers plugin and
imported into the node's containerd, and the plugin registered by hand.

The cluster is started here and stopped at the end of the session when it was not already
running (`cluster.sh status`); one that was running before (a developer's, kept up between
runs) is used and left running. Under CI=true nothing is skipped: a cluster that cannot
start fails the suite.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config

from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_containers import ImageSpec, build_image
from taskfabric_containers._client import ContainerApi
from taskfabric_containers.testing import PodmanMissing, podman_service
from taskfabric_kubernetes import KubernetesBackend

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CLUSTER_SH = HERE / "cluster.sh"
STATE = Path(os.environ.get("TASKFABRIC_KUBE_STATE", "/var/lib/taskfabric/kubernetes"))
#: The image the tests' pods run: the core from this tree, with pandas (the containers
#: suite's image: built once, cached by podman under its content hash).
TASK_IMAGE = ImageSpec(name="taskfabric-it", packages=["./core[pandas]"], root=str(REPO))
#: The image of pods on an s3 blob store: the core and taskfabric-aws, which reads and writes
#: s3:// URIs (through the attempt's presigned grants).
S3_TASK_IMAGE = ImageSpec(
    name="taskfabric-it-s3", packages=["./core", "./plugins/aws"], root=str(REPO)
)
#: The namespace most tests run their pods in, and two standing for two clusters.
NAMESPACE = "tf-it"
NAMESPACE_A = "tf-it-a"
NAMESPACE_B = "tf-it-b"


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path
    core: client.CoreV1Api
    image: str


def _cluster_sh(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CLUSTER_SH), *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def _fail_or_skip(message: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the kubernetes suite needs its cluster under CI: {message}")
    pytest.skip(message)


@pytest.fixture(autouse=True)
def _isolated(taskfabric_home: Path) -> Path:
    return taskfabric_home


@pytest.fixture(scope="session")
def _cluster_up() -> Iterator[Path]:
    status = _cluster_sh("status", timeout=60)
    running = status.returncode == 0 and "stopped" not in status.stdout
    started = False
    if not running:
        up = _cluster_sh("up")
        started = True
        if up.returncode != 0:
            down = _cluster_sh("down", timeout=300)
            _fail_or_skip(
                f"cluster.sh up failed ({up.returncode}):\n{up.stderr[-4000:]}\n{down.stderr}"
            )
    try:
        yield STATE / "kubeconfig"
    finally:
        if started:
            down = _cluster_sh("down", timeout=300)
            assert down.returncode == 0, down.stderr


@pytest.fixture(scope="session")
def cluster(_cluster_up: Path, tmp_path_factory: pytest.TempPathFactory) -> Cluster:
    api_client = config.new_client_from_config(
        config_file=str(_cluster_up), context="taskfabric-test"
    )
    core = client.CoreV1Api(api_client)
    for namespace in (NAMESPACE, NAMESPACE_A, NAMESPACE_B):
        try:
            core.create_namespace({"metadata": {"name": namespace}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise
    image = _task_image(tmp_path_factory.mktemp("image"), TASK_IMAGE)
    return Cluster(_cluster_up, core, image)


@pytest.fixture(scope="session")
def s3_image(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The image of pods on an s3 blob store, in the node's containerd."""
    return _task_image(tmp_path_factory.mktemp("s3-image"), S3_TASK_IMAGE)


def _task_image(folder: Path, spec: ImageSpec) -> str:
    """Build (or find) the task image with podman and import it into the node's containerd
    unless it is there already."""
    try:
        with podman_service(folder / "podman") as url:
            api = ContainerApi(url, timeout=900)
            try:
                ref = build_image(spec, api, print).ref
            finally:
                api.close()
    except PodmanMissing as exc:
        _fail_or_skip(str(exc))
        raise
    listed = _cluster_sh("images", timeout=120)
    assert listed.returncode == 0, listed.stderr
    if ref in listed.stdout.split():
        return ref
    tar = folder / "task-image.tar"
    saved = subprocess.run(
        ["podman", "save", "--format", "docker-archive", "-o", str(tar), ref],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    imported = _cluster_sh("import-image", str(tar), timeout=900)
    assert imported.returncode == 0, imported.stderr
    tar.unlink()
    return ref


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "kubernetes", KubernetesBackend)
    with use_plugins(plugins):
        yield plugins
