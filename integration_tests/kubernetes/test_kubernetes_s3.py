"""Pods of a multi-tenant server on an S3 blob store (issue 21), on the real cluster and
moto's S3 server: each pod reaches its own attempt's blobs through presigned URLs and upload
policies (taskfabric-aws's grants, `blob_access = "auto"`), holding no credential.

Registered code of project alpha runs in a pod on a multi-tenant engine (`isolate_code`):
it reads its uploaded input and writes its outputs (through the POST policies: the pod has no
credential to write any other way), its environment and spec hold no AWS credential and not
the engine's secret, the URL of its grants comes from a Secret of its own that its pod owns
(gone with the pod), the grants document is deleted when the attempt ends, beta's object is
refused by the pod's store; an output naming beta's object is refused by the engine; and a
config that hands pods credentials is refused at launch with the fix.

What moto does not check (see integration_tests/aws/test_s3_grants.py, measured on moto 5):
moto serves a presigned URL without verifying its signature or expiry, takes a POST upload
without checking its policy's conditions, and answers an unsigned ListObjects or PutObject.
So a pod here *could* write around its grants straight to moto, which AWS would refuse; what
is tested is what a pod is given (no credential, its own grants only), what taskfabric's store
in the pod refuses, what moto itself refuses (an unsigned GET of a private object: 403), and
what the engine refuses. That S3 enforces a signature's key, method and expiry, and a
policy's conditions, is AWS's part and not tested here.
"""

from __future__ import annotations

import json
import textwrap
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from conftest import NAMESPACE, Cluster
from kubernetes import client as kube
from test_kubernetes import BACKEND, pods_of

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import STORAGE_GROUP
from taskfabric.plugins import Plugins
from taskfabric.registry import build_package
from taskfabric.server import Client, ControlPlane, ServerError, create_app
from taskfabric_aws import S3BlobStore
from taskfabric_aws.testing import FAKE_CREDENTIALS, MotoMissing, moto_server

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

BUCKET = "tf-kube"
#: The engine's credentials (moto takes any): the secret must never reach a pod.
KEY_ID, SECRET = "AKIATFKUBEGRANTS0017", f"tf-kube-secret-{uuid.uuid4().hex}"

ALPHA = """
import dataclasses
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

from taskfabric import File, task, workflow


@task
def probe(data: File, secret: str, beta: str) -> tuple[File, str]:
    text = data.read_text()  # its own input, through its grant
    found = sorted(k for k, v in os.environ.items() if k.startswith("AWS_") or secret in v)
    from taskfabric_aws import S3BlobStore

    try:  # beta's object through the store of the pod
        S3BlobStore.from_uri(beta).get_bytes(beta)
        through_store = "read"
    except Exception as exc:
        through_store = str(exc)
    # Straight to S3 with no signature (the endpoint is the grants URL's).
    endpoint = "/".join(os.environ["TASKFABRIC_S3_GRANTS"].split("/", 3)[:3])
    try:
        urllib.request.urlopen(f"{endpoint}/{beta[len('s3://'):]}", timeout=30).read()
        unsigned = 200
    except urllib.error.HTTPError as exc:
        unsigned = exc.code
    out = File.new("upper.txt")
    out.path.write_text(text.upper())
    report = {
        "found": found,
        "aws_files": Path(os.path.expanduser("~/.aws")).exists(),
        "through_store": through_store,
        "unsigned": unsigned,
    }
    return out, json.dumps(report)


@workflow
def snooping(data: File, secret: str, beta: str) -> tuple[File, str]:
    return probe(data=data, secret=secret, beta=beta)


@task
def forge(data: File, beta: str) -> File:
    # Its input's record, pointed at beta's object: the engine must not take it.
    return File.from_stored(dataclasses.replace(data.stored, uri=beta))


@workflow
def forging(data: File, beta: str) -> File:
    return forge(data=data, beta=beta)
"""


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto's S3 on 127.0.0.1, which the test cluster's pods reach (host network)."""
    try:
        with moto_server(tmp_path_factory.mktemp("moto")) as endpoint:
            _s3(endpoint).create_bucket(Bucket=BUCKET)
            yield endpoint
    except MotoMissing as exc:
        pytest.fail(f"the kubernetes suite's s3 tests need moto's server: {exc}")


def _s3(endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=KEY_ID,
        aws_secret_access_key=SECRET,
    )


def _config(
    folder: Path, cluster: Cluster, image: str, endpoint: str, extra: str = ""
) -> tuple[Path, S3BlobStore]:
    """The config of a multi-tenant server on a fresh prefix of the bucket, and its store."""
    folder.mkdir(parents=True, exist_ok=True)
    root = f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}"
    path = folder / "taskfabric.toml"
    backend = BACKEND.format(
        kubeconfig=cluster.kubeconfig, context="taskfabric-test", namespace=NAMESPACE, image=image
    )
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{root}"
            options = {{ endpoint_url = "{endpoint}" }}

            [metadata]
            url = "sqlite:///{folder / "meta.db"}"

            [task_types]
            python = "k8s"

            [backends.k8s]
            """)
        + backend
        + extra,
        encoding="utf-8",
    )
    return path, S3BlobStore.from_root(root, {"endpoint_url": endpoint})


@pytest.fixture
def engine_credentials(plugins: Plugins, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's own credentials, in its environment (where boto3 finds them), and the
    s3 store's driver (plugins are registered by hand in these tests)."""
    plugins.add_driver(STORAGE_GROUP, "s3", S3BlobStore)
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT", raising=False)  # the config's S3 root wins
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", FAKE_CREDENTIALS["AWS_DEFAULT_REGION"])


def _server(config_path: Path) -> tuple[ControlPlane, Client]:
    from starlette.testclient import TestClient

    config = load_config(config_path)
    plane = ControlPlane(config, engine=Engine(config, isolate_code=True))
    app = create_app(config, plane=plane)
    token = plane.tokens.create(projects=["alpha"], role="admin", name="alpha")[1]
    return plane, Client("http://testserver", token, http=TestClient(app))


def _run(config_path: Path, client: Client, workflow: str, inputs: dict[str, Any]) -> str:
    launched = client.launch("alpha", "prod", workflow=workflow, inputs=inputs)
    engine = Engine(load_config(config_path), isolate_code=True)  # a multi-tenant worker
    try:
        engine.resume(launched.execution.id)
    finally:
        engine.close()
    return launched.execution.id


def _eventually(check: Any, what: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds:.0f} s: {what}"
        time.sleep(0.5)


def _absent(call: Any) -> bool:
    try:
        call()
    except kube.ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_pods_of_an_s3_store_reach_their_own_blobs_with_no_credentials(
    tmp_path: Path,
    cluster: Cluster,
    s3_image: str,
    moto_endpoint: str,
    plugins: Plugins,
    engine_credentials: None,
) -> None:
    config_path, store = _config(tmp_path / "home", cluster, s3_image, moto_endpoint)
    plane, client = _server(config_path)
    try:
        beta = store.uri("uploads", "beta", "rows.csv")
        store.put_bytes(beta, b"beta's rows")
        module = f"alphas3_{uuid.uuid4().hex[:8]}"
        src = tmp_path / "alpha-src"
        src.mkdir()
        (src / f"{module}.py").write_text(ALPHA)
        client.register(build_package(src, project="alpha", domain="prod", version="v1"))
        notes = tmp_path / "notes.txt"
        notes.write_text("alpha's notes")
        upload = client.upload("alpha", "prod", notes)
        inputs = {"data": {"upload": upload.ref}, "secret": SECRET, "beta": beta}

        looked = _run(config_path, client, f"{module}.snooping", inputs)
        detail = client.execution(looked)
        assert detail.execution.phase == "SUCCEEDED", detail.execution.error
        report = json.loads(detail.outputs["o1"])
        assert report["found"] == [] and report["aws_files"] is False, report
        assert "access to its own blobs only" in report["through_store"], report
        assert report["unsigned"] == 403, report  # moto refuses an unsigned GET
        # Its output, written through its raw-data folder's POST policy.
        written = detail.outputs["o0"]
        uri = written["uri"] if isinstance(written, dict) else str(written)
        assert store.get_bytes(uri) == b"ALPHA'S NOTES"

        # The pod's spec (kept for an hour by the tests' settings): no credential, no secret;
        # the grants' URL by reference to a Secret the pod owns.
        (pod,) = pods_of(cluster, looked)
        spec = cluster.core.api_client.sanitize_for_serialization(pod.spec)
        assert SECRET not in json.dumps(spec) and "X-Amz-Signature" not in json.dumps(spec)
        (container,) = [c for c in spec["containers"] if c["name"] == "task"]
        env = {e["name"]: e for e in container.get("env", [])}
        assert not [name for name in env if name.startswith("AWS_")], env
        secret_name = f"{pod.metadata.name}-grants"
        assert env["TASKFABRIC_S3_GRANTS"]["valueFrom"] == {
            "secretKeyRef": {"name": secret_name, "key": "grants-url"}
        }
        secret = cluster.core.read_namespaced_secret(secret_name, NAMESPACE)
        (owner,) = secret.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Pod", pod.metadata.name, pod.metadata.uid)
        # The grants document is gone once the attempt ended.
        listed = _s3(moto_endpoint).list_objects_v2(Bucket=BUCKET, Prefix=store.prefix)
        keys = [o["Key"] for o in listed.get("Contents", [])]
        assert not [k for k in keys if "/pod-tasks/" in k and k.endswith(".json")], keys

        # An output naming beta's object is refused: the next task would be granted it.
        forged = _run(config_path, client, f"{module}.forging", {"data": {"upload": upload.ref},
                                                                  "beta": beta})  # fmt: skip
        detail = client.execution(forged)
        assert detail.execution.phase == "FAILED"
        assert f"an output names {beta}" in str(detail.execution.error)
        assert not detail.outputs

        # The cluster deletes the Secret with its pod.
        cluster.core.delete_namespaced_pod(pod.metadata.name, NAMESPACE, grace_period_seconds=0)
        _eventually(
            lambda: _absent(lambda: cluster.core.read_namespaced_secret(secret_name, NAMESPACE)),
            "the pod's Secret deleted with it by the garbage collector",
        )
    finally:
        plane.close()


def test_a_config_handing_pods_credentials_is_refused_on_a_multi_tenant_server(
    tmp_path: Path,
    cluster: Cluster,
    s3_image: str,
    moto_endpoint: str,
    plugins: Plugins,
    engine_credentials: None,
) -> None:
    extra = 'secret_env = { AWS_SECRET_ACCESS_KEY = "s3-credentials/secret" }\n'
    config_path, _ = _config(tmp_path / "home", cluster, s3_image, moto_endpoint, extra)
    plane, client = _server(config_path)
    try:
        module = f"alphas3_{uuid.uuid4().hex[:8]}"
        src = tmp_path / "alpha-src"
        src.mkdir()
        (src / f"{module}.py").write_text(ALPHA)
        client.register(build_package(src, project="alpha", domain="prod", version="v1"))
        notes = tmp_path / "notes.txt"
        notes.write_text("alpha's notes")
        inputs = {"data": {"upload": client.upload("alpha", "prod", notes).ref}, "beta": ""}
        with pytest.raises(ServerError) as refused:
            client.launch("alpha", "prod", workflow=f"{module}.forging", inputs=inputs)
    finally:
        plane.close()
    assert refused.value.status == 409
    message = str(refused.value)
    assert "[backends.k8s] passes AWS_SECRET_ACCESS_KEY to every pod" in message
    assert "remove them from pass_env, env and secret_env" in message
