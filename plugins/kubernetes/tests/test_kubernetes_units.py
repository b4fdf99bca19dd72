"""The parts of the `kubernetes` backend that need no cluster: names, namespaces, the pod
manifest (templates merged, resources, secrets by reference), settings errors, and what a
pod's state means for its attempt (pods as the API server returns them)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from taskfabric.core.v1 import identifier_pb2, tasks_pb2
from taskfabric_kubernetes import KubernetesSettings
from taskfabric_kubernetes._names import label_value, namespace_of, pod_name
from taskfabric_kubernetes._pods import merge, pod_manifest, resources_of
from taskfabric_kubernetes._status import assess, has_deadline

NOW = 1_800_000_000.0


def _created(seconds_ago: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(NOW - seconds_ago, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod(
    phase: str = "Pending",
    *,
    state: dict[str, Any] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    reason: str = "",
    message: str = "",
    age: float = 0.0,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase, "conditions": conditions or []}
    if state is not None:
        status["containerStatuses"] = [{"name": "task", "image": "img:1", "state": state}]
    if reason:
        status["reason"] = reason
        status["message"] = message
    return {
        "metadata": {"name": "tf-x", "namespace": "ns", "creationTimestamp": _created(age)},
        "status": status,
    }


def _assess(pod: dict[str, Any], unschedulable: float = 300, pull: float = 120) -> Any:
    return assess(pod, NOW, unschedulable_seconds=unschedulable, image_pull_seconds=pull)


# -- names -----------------------------------------------------------------------------------


def test_pod_names_are_stable_valid_dns_labels_unique_per_attempt() -> None:
    name = pod_name("6c0821a38093/n1[12]/2")
    assert name == pod_name("6c0821a38093/n1[12]/2")
    assert name != pod_name("6c0821a38093/n1[12]/3")
    assert name.startswith("tf-6c0821a38093-n1-12-2-")
    assert len(name) <= 63 and name == name.lower()
    long = pod_name("x" * 300 + "/n0/1")
    assert len(long) <= 63 and not long.endswith("-")


def test_label_values_are_valid_and_long_ones_keep_a_hash() -> None:
    assert label_value("n1[3]") == "n1.3"
    assert label_value("k8s@eu") == "k8s.eu"
    long = label_value("a" * 100)
    assert len(long) <= 63 and long != label_value("a" * 101)


def test_namespace_template_is_filled_and_made_valid() -> None:
    template = "taskfabric-{execution.project}-{execution.domain}"
    assert namespace_of(template, "Shop_Data", "production") == "taskfabric-shop-data-production"
    assert namespace_of(template, "", "") == "taskfabric-default-development"
    assert namespace_of("fixed", "a", "b") == "fixed"
    assert len(namespace_of(template, "p" * 80, "d")) <= 63


# -- settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"namespace": "tf-{execution.name}"}, "unknown placeholder {execution.name}"),
        ({"namespace": "tf-{project}"}, "{execution.project}"),
        ({"secret_env": {"TOKEN": "no-key"}}, "is not 'SECRET/KEY'"),
        ({"secret_env": {"1BAD": "s/k"}}, "is not an environment variable name"),
        ({"secret_volumes": {"relative": "s"}}, "is not an absolute path"),
        ({"pod_template": {"speck": {}}}, "unknown keys speck"),
        ({"pod_template": {"spec": {"containers": [{"image": "x"}]}}}, "each with a name"),
        ({"task_pod_templates": {"t.*": {"spec": []}}}, "spec must be a table"),
        ({"data": "nfs"}, "data"),
    ],
)
def test_bad_settings_are_clear_errors(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        KubernetesSettings.model_validate(settings)
    assert message in str(info.value)


# -- the pod manifest ------------------------------------------------------------------------


def test_merge_keeps_both_sides_and_merges_containers_by_name() -> None:
    base = {"spec": {"tolerations": [{"key": "a"}], "containers": [{"name": "task", "env": [1]}]}}
    over = {
        "spec": {
            "tolerations": [{"key": "b"}],
            "containers": [{"name": "task", "env": [2]}, {"name": "sidecar"}],
        }
    }
    merged = merge(base, over)
    assert merged["spec"]["tolerations"] == [{"key": "a"}, {"key": "b"}]
    assert merged["spec"]["containers"] == [{"name": "task", "env": [1, 2]}, {"name": "sidecar"}]
    assert base["spec"]["tolerations"] == [{"key": "a"}]  # unchanged


def _template(name: str = "flows.train", **resources: tasks_pb2.ResourceSpec) -> Any:
    t = tasks_pb2.TaskTemplate(id=identifier_pb2.Identifier(name=name))
    if "requests" in resources:
        t.resources.requests.CopyFrom(resources["requests"])
    if "limits" in resources:
        t.resources.limits.CopyFrom(resources["limits"])
    return t


def test_resources_come_from_the_task_else_the_settings() -> None:
    settings = KubernetesSettings(cpu="250m", memory="128Mi")
    assert resources_of(_template(), settings) == {
        "requests": {"cpu": "250m", "memory": "128Mi"},
        "limits": {"cpu": "250m", "memory": "128Mi"},
    }
    task = _template(
        requests=tasks_pb2.ResourceSpec(cpu="1", memory="1Gi", gpu="1"),
        limits=tasks_pb2.ResourceSpec(memory="2Gi", ephemeral_storage="10Gi"),
    )
    assert resources_of(task, settings) == {
        "requests": {"cpu": "1", "memory": "1Gi"},
        "limits": {"memory": "2Gi", "ephemeral-storage": "10Gi", "nvidia.com/gpu": "1"},
    }


def test_the_manifest_merges_templates_and_refers_to_secrets_by_name() -> None:
    settings = KubernetesSettings(
        pod_template={
            "metadata": {"labels": {"team": "data"}},
            "spec": {"serviceAccountName": "runner", "nodeSelector": {"pool": "batch"}},
        },
        task_pod_templates={
            "flows.train*": {"spec": {"tolerations": [{"key": "gpu", "operator": "Exists"}]}},
            "other.*": {"spec": {"nodeSelector": {"pool": "other"}}},
        },
        secret_env={"API_TOKEN": "api-credentials/token"},
        secret_volumes={"/etc/creds": "db-credentials"},
        labels={"cost-center": "42"},
    )
    pod = pod_manifest(
        settings=settings,
        name="tf-a",
        namespace="ns",
        labels={"taskfabric.io/execution": "e1"},
        annotations={"taskfabric.io/attempt-id": "e1/n0/1"},
        template=_template("flows.train_model"),
        image="img:1",
        command=["python3", "-m", "taskfabric.execute"],
        env={"A": "1"},
        mounts=[],
        run_as=None,
    )
    assert pod["metadata"]["labels"] == {
        "team": "data",
        "cost-center": "42",
        "taskfabric.io/execution": "e1",
    }
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "runner"
    assert spec["nodeSelector"] == {"pool": "batch"}
    assert spec["tolerations"] == [{"key": "gpu", "operator": "Exists"}]
    assert spec["restartPolicy"] == "Never"
    assert spec["shareProcessNamespace"] is True
    (container,) = spec["containers"]
    assert container["name"] == "task" and container["image"] == "img:1"
    assert {"name": "A", "value": "1"} in container["env"]
    assert {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "api-credentials", "key": "token"}},
    } in container["env"]
    assert {"name": "tf-secret-0", "secret": {"secretName": "db-credentials"}} in spec["volumes"]
    assert {"name": "tf-secret-0", "mountPath": "/etc/creds", "readOnly": True} in container[
        "volumeMounts"
    ]


# -- what a pod's state means ----------------------------------------------------------------


def test_running_and_pending_pods() -> None:
    assert _assess(_pod("Running", state={"running": {}})).running
    assert _assess(_pod("Pending", state={"waiting": {"reason": "ContainerCreating"}})).pending
    assert _assess(_pod("Pending")).pending


def test_an_ended_container_gives_its_exit_code_and_reason() -> None:
    state = _assess(_pod("Failed", state={"terminated": {"exitCode": 137, "reason": "OOMKilled"}}))
    assert state.ended and state.exit_code == 137 and state.reason == "OOMKilled"
    done = _assess(_pod("Succeeded", state={"terminated": {"exitCode": 0}}))
    assert done.ended and done.exit_code == 0


def test_an_evicted_pod_is_a_retryable_system_error() -> None:
    pod = _pod("Failed", reason="Evicted", message="The node was low on resource: memory.", age=60)
    error = _assess(pod).error
    assert error is not None
    assert (error.code, error.kind, error.retryable) == ("PodEvicted", "system", True)
    assert "low on resource: memory" in error.message


def test_an_image_that_never_pulls_fails_at_once_and_a_pull_error_after_the_grace() -> None:
    never = _pod(state={"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}})
    error = _assess(never).error
    assert error is not None and error.code == "ImagePullFailed" and error.kind == "user"
    assert not error.retryable
    backoff = {"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}}
    assert _assess(_pod(state=backoff, age=119)).pending
    assert has_deadline(_pod(state=backoff, age=119))
    late = _assess(_pod(state=backoff, age=121)).error
    assert late is not None and "for 121s" in late.message


def test_a_missing_secret_fails_the_attempt_with_the_kubelet_message() -> None:
    waiting = {
        "reason": "CreateContainerConfigError",
        "message": 'secret "api-credentials" not found',
    }
    error = _assess(_pod(state={"waiting": waiting})).error
    assert error is not None and error.code == "CreateContainerConfigError"
    assert 'secret "api-credentials" not found' in error.message


def test_an_unschedulable_pod_fails_after_the_deadline() -> None:
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/3 nodes are available: 3 Insufficient cpu.",
    }
    assert _assess(_pod(conditions=[condition], age=299)).pending
    error = _assess(_pod(conditions=[condition], age=301)).error
    assert error is not None and error.code == "Unschedulable" and error.retryable
    assert "3 Insufficient cpu. Ask for fewer resources" in error.message


def test_a_pod_past_its_deadline_before_running_is_not_retried() -> None:
    error = _assess(
        _pod("Failed", reason="DeadlineExceeded", message="Pod was active too long")
    ).error
    assert error is not None and error.code == "PodDeadlineExceeded" and not error.retryable


# -- isolation ---------------------------------------------------------------------------------


def _kubeconfig(tmp_path: Any) -> Any:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        "clusters: [{name: t, cluster: {server: 'https://127.0.0.1:9'}}]\n"
        "users: [{name: t, user: {token: x}}]\n"
        "contexts: [{name: t, context: {cluster: t, user: t}}]\n"
    )
    return kubeconfig


def _backend(tmp_path: Any, store: Any = None, **settings: Any) -> Any:
    from taskfabric.plugin_api import BackendContext
    from taskfabric.storage import LocalBlobStore, PackStore
    from taskfabric_kubernetes import KubernetesBackend

    kubeconfig = _kubeconfig(tmp_path)
    data = tmp_path / "data"
    store = store or LocalBlobStore(data / "blobs")
    context = BackendContext(
        store=store,
        literals=PackStore(store),
        data_root=data,
        work_root=data / "work",
        parallelism=2,
        core_version="0",
    )
    found = {"kubeconfig": str(kubeconfig), "image": "img:1", **settings}
    return KubernetesBackend("pods", KubernetesSettings.model_validate(found), context)


def test_isolation_gaps_name_what_opens_a_way_out(tmp_path: Any) -> None:
    from taskfabric import task

    @task
    def plain() -> None: ...

    @task(backend_options={"kubernetes": {"pod_template": {"spec": {"hostPID": True}}}})
    def own_template() -> None: ...

    @task(backend_options={"kubernetes": {"secret_env": {"T": "other-team/token"}}})
    def own_secret() -> None: ...

    backend = _backend(tmp_path)
    try:
        assert backend.isolated
        assert backend.isolation_gaps(plain.template()) == []
        (gap,) = backend.isolation_gaps(own_template.template())
        assert "the task sets its own pod_template" in gap
        assert 'remove "pod_template" from [backends.pods] task_overrides' in gap
        # Secrets of its own choice, in a namespace of its project only: fine.
        assert backend.isolation_gaps(own_secret.template()) == []
    finally:
        backend.close()
    shared = _backend(tmp_path, namespace="batch", data="store")
    try:
        gaps = shared.isolation_gaps(own_secret.template())
    finally:
        shared.close()
    assert len(gaps) == 2, gaps
    assert gaps[0].startswith(
        '[backends.pods] data = "store" on a file:// blob store, which cannot presign: each pod'
    )
    assert "in namespace 'batch', which projects share" in gaps[1]


def test_abandon_deletes_the_pod_its_handle_names(tmp_path: Any) -> None:
    # an attempt an earlier engine process left running, which the resumed run never reached
    backend = _backend(tmp_path, kill_grace_seconds=7)
    deleted: list[tuple[str, str, int]] = []

    class Api:
        def delete_pod(self, namespace: str, name: str, grace: int) -> bool:
            deleted.append((namespace, name, grace))
            return True

        def close(self) -> None:
            pass

    backend.api = Api()
    backend.abandon("e/n0/1", "tf-p-d/tf-e-n0-1")
    backend.abandon("e/n1/1", "pending:tf-p-d/tf-e-n1-1")  # its name is known before it exists
    backend.abandon("e/n2/1", "not a pod")
    backend.close()  # waits for the backend's threads
    assert sorted(deleted) == [("tf-p-d", "tf-e-n0-1", 7), ("tf-p-d", "tf-e-n1-1", 7)]


# -- presigned access on an s3 store -------------------------------------------------------------


def _s3_backend(tmp_path: Any, **settings: Any) -> Any:
    """A backend whose blob store is S3 (no request is made: nothing is submitted)."""
    pytest.importorskip("taskfabric_aws", reason="the s3 extra: pip install -e plugins/aws")
    from taskfabric_aws import S3BlobStore, S3Settings

    store = S3BlobStore("s3://bucket/tf", S3Settings(endpoint_url="http://127.0.0.1:9"))
    return _backend(tmp_path, store, **settings)


def test_pods_of_an_s3_store_are_isolated_with_presigned_access(tmp_path: Any) -> None:
    from taskfabric import task

    @task
    def plain() -> None: ...

    @task(backend_options={"kubernetes": {"env": {"AWS_ACCESS_KEY_ID": "AKIA..."}}})
    def own_key() -> None: ...

    backend = _s3_backend(tmp_path)
    try:
        assert backend.isolated and backend._access is not None  # "auto" on S3: presigned
        assert backend.isolation_gaps(plain.template()) == []
        (gap,) = backend.isolation_gaps(own_key.template())
        assert "the task sets AWS_ACCESS_KEY_ID in its own env (backend_options)" in gap
    finally:
        backend.close()


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        (
            {"secret_env": {"AWS_SECRET_ACCESS_KEY": "s3/secret"}, "pass_env": ["AWS_PROFILE"]},
            "[backends.pods] passes AWS_PROFILE, AWS_SECRET_ACCESS_KEY to every pod: AWS "
            "credentials that may reach the whole blob store (every project's data); remove "
            "them from pass_env, env and secret_env",
        ),
        (
            {"pod_template": {"spec": {"serviceAccountName": "tasks"}}},
            "[backends.pods] pod_template runs pods as service account 'tasks', which may "
            "carry a cloud role",
        ),
        (
            {"blob_access": "credentials"},
            '[backends.pods] data = "store" with blob_access = "credentials": each pod would '
            "reach the blob store with credentials of the whole store",
        ),
    ],
)
def test_credentials_beside_presigned_access_are_refused_with_the_fix(
    tmp_path: Any, settings: dict[str, Any], expected: str
) -> None:
    from taskfabric import task

    @task
    def plain() -> None: ...

    backend = _s3_backend(tmp_path, **settings)
    try:
        (gap,) = backend.isolation_gaps(plain.template())
    finally:
        backend.close()
    assert gap.startswith(expected), gap


def test_presigned_access_needs_an_s3_store(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match=r'blob_access = "presigned" presigns access to an s3'):
        _backend(tmp_path, data="store", blob_access="presigned")


def test_the_grants_reach_the_pod_through_its_secret_never_its_spec() -> None:
    settings = KubernetesSettings(image="img:1", env={"TASKFABRIC_S3_GRANTS": "forged"})
    template = tasks_pb2.TaskTemplate()
    manifest = pod_manifest(
        settings=settings, name="tf-x", namespace="ns", labels={}, annotations={},
        template=template, image="img:1", command=["python3"], env=dict(settings.env),
        mounts=[], run_as=None, secret_refs={"TASKFABRIC_S3_GRANTS": "tf-x-grants/grants-url"},
    )  # fmt: skip
    (variable,) = [
        e for e in manifest["spec"]["containers"][0]["env"] if e["name"] == "TASKFABRIC_S3_GRANTS"
    ]
    assert variable == {
        "name": "TASKFABRIC_S3_GRANTS",
        "valueFrom": {"secretKeyRef": {"name": "tf-x-grants", "key": "grants-url"}},
    }
