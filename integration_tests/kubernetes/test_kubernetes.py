"""The `kubernetes` backend against a real cluster: typed data between pods, the errors a
user meets (out of memory, a crash with its log, a missing image, a spec the API server
refuses, no permission, a pod that cannot be scheduled), cancel, secrets by reference, a map
within its concurrency, two clusters chosen by the execution's cluster label, and
`taskfabric plugins check`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kube_tasks
import pytest
from conftest import NAMESPACE, NAMESPACE_A, NAMESPACE_B, Cluster
from kubernetes import client, watch

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric_kubernetes._names import LABEL_BACKEND, LABEL_EXECUTION, LABEL_NODE

#: Pods run with the node's network (the test cluster has no pod network) and keep for
#: inspection; the cluster's `down` deletes them.
BACKEND = """\
driver = "kubernetes"
kubeconfig = "{kubeconfig}"
context = "{context}"
namespace = "{namespace}"
image = "{image}"
image_pull_policy = "Never"
code = "host-path"
kill_grace_seconds = 2
keep_finished_pods_seconds = 3600
pod_template = {{ spec = {{ hostNetwork = true }} }}
"""


def write_config(
    folder: Path,
    cluster: Cluster,
    extra: str = "",
    *,
    backend: str = "k8s",
    context: str = "taskfabric-test",
    namespace: str = NAMESPACE,
    top: str = "",
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taskfabric.toml"
    settings = BACKEND.format(
        kubeconfig=cluster.kubeconfig, context=context, namespace=namespace, image=cluster.image
    )
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{folder / "data"}"

            [engine]
            parallelism = 8

            [task_types]
            python = "{backend}"
            """)
        + top
        + f"\n[backends.{backend}]\n"
        + settings
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path, cluster: Cluster) -> Path:
    return write_config(tmp_path / "home", cluster)


@pytest.fixture
def engine(config_path: Path, plugins: Plugins) -> Iterator[Engine]:
    engine = Engine(load_config(config_path), plugins=plugins)
    yield engine
    engine.close()


def pods_of(cluster: Cluster, execution_id: str, namespace: str = NAMESPACE) -> list[Any]:
    found = cluster.core.list_namespaced_pod(
        namespace, label_selector=f"{LABEL_EXECUTION}={execution_id}"
    )
    return list(found.items)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def wait_until_gone(cluster: Cluster, namespace: str, name: str, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            cluster.core.read_namespaced_pod(name, namespace)
        except client.ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.5)
    pytest.fail(f"pod {namespace}/{name} still exists after {seconds:g}s")


def test_files_and_folders_travel_between_pods(
    engine: Engine, cluster: Cluster, config_path: Path
) -> None:
    result = engine.launch(kube_tasks.typed_pipeline, {"n": 5})
    assert result.phase == "SUCCEEDED", result.error
    numbers, squares = result.python_outputs(kube_tasks.typed_pipeline, engine.store)
    assert numbers.read_text() == "0\n1\n2\n3\n4\n"
    assert squares == 0 + 1 + 4 + 9 + 16
    pods = pods_of(cluster, result.execution_id)
    assert len(pods) == 3
    for pod in pods:
        assert pod.status.phase == "Succeeded"
        labels = pod.metadata.labels
        assert labels["taskfabric.io/project"] == "default"
        assert labels["taskfabric.io/domain"] == "development"
        assert labels["taskfabric.io/attempt"] == "1"
        assert labels[LABEL_BACKEND] == "k8s"
        assert pod.metadata.name.startswith("tf-")
        assert pod.spec.containers[0].image == cluster.image
    # The pod's log is the attempt's log.
    shown = cli(config_path, "executions", "logs", result.execution_id, "n0")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "writing 5 numbers" in shown.stdout


def test_out_of_memory_is_a_clear_user_error(engine: Engine) -> None:
    result = engine.launch(kube_tasks.memory_hog, {"mib": 600})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "OutOfMemory", result.error
    assert "OOMKilled" in result.error["message"]
    assert "limit 100Mi" in result.error["message"]
    assert result.error["kind"] == "user"


def test_a_pod_that_exits_7_fails_with_its_log_in_the_error(engine: Engine) -> None:
    result = engine.launch(kube_tasks.dies, {"note": "the disk is full"})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "PodFailed", result.error
    assert "exited with code 7" in result.error["message"]
    assert "about to exit 7: the disk is full" in result.error["message"]


def test_a_missing_image_fails_at_once(engine: Engine) -> None:
    result = engine.launch(kube_tasks.missing_image, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "ImagePullFailed", result.error
    assert "localhost/taskfabric-no-such-image:1" in result.error["message"]
    assert "ErrImageNeverPull" in result.error["message"]
    assert result.error["kind"] == "user"


def test_an_image_that_cannot_be_pulled_fails_after_the_grace(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    extra = "image_pull_seconds = 0\n"
    config = write_config(tmp_path / "h", cluster, extra)
    text = config.read_text().replace('image_pull_policy = "Never"', 'image_pull_policy = "Always"')
    config.write_text(text)
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.missing_image, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "ImagePullFailed", result.error
    assert (
        "ErrImagePull" in result.error["message"] or "ImagePullBackOff" in result.error["message"]
    )


def test_a_pod_spec_the_api_server_refuses_is_a_user_error(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    extra = (
        "[backends.k8s.task_pod_templates]\n"
        '"*.rejected" = { spec = { activeDeadlineSeconds = -5 } }\n'
    )
    with Engine(load_config(write_config(tmp_path / "h", cluster, extra)), plugins=plugins) as e:
        result = e.launch(kube_tasks.invalid_pod, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "InvalidPodSpec", result.error
    assert "activeDeadlineSeconds" in result.error["message"]
    assert "task_pod_templates" in result.error["message"]


def test_a_pod_that_cannot_be_scheduled_fails_with_the_reason(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    extra = (
        "unschedulable_seconds = 0\n"
        "[backends.k8s.task_pod_templates]\n"
        '"*.nowhere" = { spec = { nodeSelector = { "taskfabric.io/no-such-node" = "x" } } }\n'
    )
    with Engine(load_config(write_config(tmp_path / "h", cluster, extra)), plugins=plugins) as e:
        result = e.launch(kube_tasks.unschedulable, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "Unschedulable", result.error
    assert "didn't match Pod's node affinity" in result.error["message"]


def test_no_permission_is_a_clear_error_and_check_says_what_is_missing(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    config = write_config(tmp_path / "h", cluster, context="taskfabric-test-nobody")
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.secret, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "Forbidden", result.error
    assert "taskfabric-nobody" in result.error["message"]
    checked = cli(config, "plugins", "check")
    assert checked.returncode != 0
    assert "may not create pods" in checked.stdout + checked.stderr


def test_plugins_check_reaches_the_api_server(tmp_path: Path, cluster: Cluster) -> None:
    checked = cli(write_config(tmp_path / "h", cluster), "plugins", "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Kubernetes v1.20.2" in checked.stdout
    assert f"may run pods in {NAMESPACE}" in checked.stdout


def test_secrets_are_passed_by_reference(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    value = f"s3cret-{os.getpid()}"
    body = {"metadata": {"name": "tf-it-token"}, "stringData": {"token": value}}
    try:
        cluster.core.create_namespaced_secret(NAMESPACE, body)
    except client.ApiException as exc:
        assert exc.status == 409
        cluster.core.replace_namespaced_secret("tf-it-token", NAMESPACE, body)
    extra = '[backends.k8s.secret_env]\nTF_IT_TOKEN = "tf-it-token/token"\n'
    config = write_config(tmp_path / "h", cluster, extra)
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.secret, {})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(kube_tasks.secret, engine.store) == value
    (pod,) = pods_of(cluster, result.execution_id)
    (env,) = [e for e in pod.spec.containers[0].env if e.name == "TF_IT_TOKEN"]
    assert env.value is None
    assert env.value_from.secret_key_ref.name == "tf-it-token"
    # Only the outputs hold the value (the task returned it); the pod spec, the task
    # template and the inputs do not.
    stored = [
        p for p in (tmp_path / "h" / "data").rglob("*")
        if p.is_file() and value.encode() in p.read_bytes()
    ]  # fmt: skip
    assert all("outputs" in p.name or p.suffix == ".log" for p in stored), stored


def test_cancel_deletes_the_pod(engine: Engine, cluster: Cluster) -> None:
    outcome: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: outcome.update(result=engine.launch(kube_tasks.slow, {"seconds": 600.0}))
    )
    thread.start()
    try:
        pod = _wait_for_running_pod(cluster, "k8s", since=time.time() - 5)
        execution_id = pod.metadata.labels[LABEL_EXECUTION]
        engine.request_cancel(execution_id)
        thread.join(timeout=300)
        assert not thread.is_alive()
    finally:
        thread.join(timeout=300)
    assert outcome["result"].phase == "ABORTED", outcome["result"].error
    wait_until_gone(cluster, NAMESPACE, pod.metadata.name)


def test_a_timeout_deletes_the_pod(engine: Engine, cluster: Cluster) -> None:
    result = engine.launch(kube_tasks.slow_with_timeout, {"seconds": 600.0})
    assert result.phase == "FAILED"
    assert result.error is not None and result.error["code"] == "Timeout", result.error
    for pod in pods_of(cluster, result.execution_id):
        wait_until_gone(cluster, NAMESPACE, pod.metadata.name)


def _wait_for_running_pod(cluster: Cluster, backend: str, since: float) -> Any:
    """The first pod of `backend` created after `since` that runs."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        pods = cluster.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"{LABEL_BACKEND}={backend}"
        ).items
        for pod in pods:
            if pod.metadata.creation_timestamp.timestamp() >= since and (
                pod.status.phase == "Running"
            ):
                return pod
        time.sleep(0.5)
    pytest.fail("no pod ran within 240s")


def test_a_map_of_30_at_concurrency_5_never_has_more_than_5_pods(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    config = write_config(tmp_path / "h", cluster, backend="k8smap")
    selector = f"{LABEL_BACKEND}=k8smap"
    most = 0
    live: set[str] = set()
    seen: set[str] = set()
    listed = cluster.core.list_namespaced_pod(NAMESPACE, label_selector=selector)
    # Every pod change in the API server's order: the item pods not yet ended at each moment.
    follower = watch.Watch()

    def follow() -> None:
        nonlocal most
        for event in follower.stream(
            cluster.core.list_namespaced_pod,
            NAMESPACE,
            label_selector=selector,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=600,
        ):
            pod = event["object"]
            if "[" not in pod.metadata.annotations.get("taskfabric.io/attempt-id", ""):
                continue  # not a map item
            seen.add(pod.metadata.name)
            if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                live.discard(pod.metadata.name)
            else:
                live.add(pod.metadata.name)
            most = max(most, len(live))
            if len(seen) == 30 and not live:
                follower.stop()
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.paced_map, {"n": 30, "seconds": 0.2})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(kube_tasks.paced_map, engine.store) == list(range(30))
    items = [
        p for p in pods_of(cluster, result.execution_id)
        if "[" in p.metadata.annotations["taskfabric.io/attempt-id"]
    ]  # fmt: skip
    assert len(items) == 30
    # The watch sees every item pod end (the engine saw each end through the API server).
    thread.join(timeout=300)
    assert not thread.is_alive() and len(seen) == 30 and not live, (len(seen), live)
    assert 1 <= most <= 5, most


def test_two_targets_are_chosen_by_the_execution_cluster_label(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    extra = textwrap.dedent(f"""\
        targets = [
          {{ label = "a", namespace = "{NAMESPACE_A}", env = {{ TF_IT_CLUSTER = "a" }} }},
          {{ label = "b", namespace = "{NAMESPACE_B}", env = {{ TF_IT_CLUSTER = "b" }} }},
        ]
        """)
    top = '\n[project]\nname = "shop"\n\n[projects.shop]\ncluster = "b"\n'
    config = write_config(tmp_path / "h", cluster, extra, top=top)
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.which_cluster, {})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(kube_tasks.which_cluster, engine.store) == "b"
    assert pods_of(cluster, result.execution_id, NAMESPACE_A) == []
    (pod,) = pods_of(cluster, result.execution_id, NAMESPACE_B)
    assert pod.metadata.labels["taskfabric.io/project"] == "shop"
    assert pod.metadata.labels[LABEL_NODE] == "n0"


def test_a_task_sets_its_own_pod_template_and_env_where_allowed(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    config = write_config(tmp_path / "h", cluster)
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.own_settings, {})
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(kube_tasks.own_settings, engine.store) == "own"
    (pod,) = pods_of(cluster, result.execution_id)
    assert pod.metadata.labels["taskfabric-it/own"] == "yes"
    narrow = write_config(tmp_path / "n", cluster, 'task_overrides = ["env"]\n')
    with Engine(load_config(narrow), plugins=plugins) as engine:
        refused = engine.launch(kube_tasks.own_settings, {})
    assert refused.phase == "FAILED"
    assert refused.error is not None
    assert refused.error["code"] == "InvalidBackendOptions", refused.error
    assert (
        "sets pod_template, which backend 'k8s' does not let tasks set"
        in (refused.error["message"])
    )
    assert pods_of(cluster, refused.execution_id) == []


def test_finished_pods_are_deleted_once_their_end_is_recorded(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    config = write_config(tmp_path / "h", cluster)
    text = config.read_text().replace("keep_finished_pods_seconds = 3600", "")
    config.write_text(text)
    seen: list[str] = []
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.typed_pipeline, {"n": 3})
        assert result.phase == "SUCCEEDED", result.error
    # Each pod existed (its log is the attempt's log) and is deleted after its end.
    shown = cli(config, "executions", "logs", result.execution_id, "n0")
    assert "writing 3 numbers" in shown.stdout, shown.stdout + shown.stderr
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        seen = [p.metadata.name for p in pods_of(cluster, result.execution_id)]
        if not seen:
            break
        time.sleep(0.5)
    assert seen == []


def test_a_pod_pool_bounds_the_pods_of_every_execution(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> None:
    extra = 'pod_pool = "k8s-pods"\n'
    top = "\n[pools.k8s-pods]\nslots = 2\n"
    config = write_config(tmp_path / "h", cluster, extra, backend="k8spool", top=top)
    selector = f"{LABEL_BACKEND}=k8spool"
    listed = cluster.core.list_namespaced_pod(NAMESPACE, label_selector=selector)
    live: set[str] = set()
    ended: set[str] = set()
    most = 0
    follower = watch.Watch()

    def follow() -> None:
        nonlocal most
        for event in follower.stream(
            cluster.core.list_namespaced_pod,
            NAMESPACE,
            label_selector=selector,
            resource_version=listed.metadata.resource_version,
            timeout_seconds=600,
        ):
            pod = event["object"]
            if event["type"] == "DELETED" or pod.status.phase in ("Succeeded", "Failed"):
                live.discard(pod.metadata.name)
                ended.add(pod.metadata.name)
            else:
                live.add(pod.metadata.name)
            most = max(most, len(live))
            if len(ended) == 7 and not live:  # the list task and 6 items
                follower.stop()
                return

    thread = threading.Thread(target=follow, daemon=True)
    thread.start()
    with Engine(load_config(config), plugins=plugins) as engine:
        result = engine.launch(kube_tasks.paced_map, {"n": 6, "seconds": 0.5})
    assert result.phase == "SUCCEEDED", result.error
    thread.join(timeout=300)
    assert not thread.is_alive() and len(ended) == 7, (ended, live)
    assert 1 <= most <= 2, most
