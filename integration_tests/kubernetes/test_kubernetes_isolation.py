"""A multi-tenant server's tasks on the kubernetes backend (issue 21), on a real cluster:
registered code runs in its pod from the execution's code bundle (mounted from the node),
sees no config, no database, no environment variable of the engine's, none of another
project's data and no capability; a link left as its outputs document is not followed; and a
task with a pod template of its own is refused at launch, saying what to change."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Cluster
from test_kubernetes import write_config

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric.registry import build_package
from taskfabric.server import Client, ControlPlane, ServerError, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

ALPHA = """
import json
import os
import sys
from pathlib import Path

from taskfabric import task, workflow


@task
def probe(paths: list[str], secret: str, mode: str) -> str:
    if mode == "link-outputs":  # the outputs document: a link to another project's file
        outputs = next(a for a in sys.argv if a.endswith("outputs.pb"))
        os.symlink(paths[-1], outputs.removeprefix("file://"))
        os._exit(0)
    found = [p for p in paths if os.path.exists(p)]
    found += [k for k, v in os.environ.items() if secret in v or k.startswith("TASKFABRIC")]
    status = Path("/proc/self/status").read_text().splitlines()
    caps = next(line.split()[1] for line in status if line.startswith("CapEff:"))
    return json.dumps({"found": found, "caps": caps})


@workflow
def snooping(paths: list[str], secret: str, mode: str = "look") -> str:
    return probe(paths=paths, secret=secret, mode=mode)


@task(backend_options={"kubernetes": {"pod_template": {"spec": {"hostPID": True}}}})
def sees_the_host() -> int:
    return len(os.listdir("/proc"))


@workflow
def escaping() -> int:
    return sees_the_host()
"""


@pytest.fixture
def server(
    tmp_path: Path, cluster: Cluster, plugins: Plugins
) -> Iterator[tuple[Path, ControlPlane, Client]]:
    from starlette.testclient import TestClient

    config_path = write_config(tmp_path / "home", cluster)
    config = load_config(config_path)
    plane = ControlPlane(config, engine=Engine(config, isolate_code=True))
    app = create_app(config, plane=plane)
    token = plane.tokens.create(projects=["alpha"], role="admin", name="alpha")[1]
    yield config_path, plane, Client("http://testserver", token, http=TestClient(app))
    plane.close()


def _run(config_path: Path, client: Client, module: str, inputs: dict[str, object]) -> str:
    launched = client.launch("alpha", "prod", workflow=f"{module}.snooping", inputs=inputs)
    engine = Engine(load_config(config_path), isolate_code=True)  # a multi-tenant worker
    try:
        engine.resume(launched.execution.id)
    finally:
        engine.close()
    return launched.execution.id


def test_registered_code_in_a_pod_sees_only_its_attempt(
    tmp_path: Path, server: tuple[Path, ControlPlane, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, plane, client = server
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("TASKFABRIC_TOKEN", f"tf_x_{secret}")  # in the worker's environment
    beta_file = plane.config.data_root / "uploads" / "beta" / "rows.csv"
    beta_file.parent.mkdir(parents=True)
    beta_file.write_text("beta's rows")
    module = f"alphapods_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "alpha-src"
    src.mkdir()
    (src / f"{module}.py").write_text(ALPHA)
    client.register(build_package(src, project="alpha", domain="prod", version="v1"))
    paths = [str(config_path), str(plane.config.data_root / "taskfabric.db"), str(beta_file)]

    looked = _run(config_path, client, module, {"paths": paths, "secret": secret})
    detail = client.execution(looked)
    assert detail.execution.phase == "SUCCEEDED", detail.execution.error
    report = json.loads(detail.outputs["o0"])
    assert report == {"found": [], "caps": "0000000000000000"}

    linked = _run(
        config_path, client, module, {"paths": paths, "secret": "", "mode": "link-outputs"}
    )
    detail = client.execution(linked)
    assert detail.execution.phase == "FAILED"
    assert not detail.outputs  # beta's file was not read as alpha's outputs

    with pytest.raises(ServerError) as refused:
        client.launch("alpha", "prod", workflow=f"{module}.escaping", inputs={})
    assert refused.value.status == 409
    assert "the task sets its own pod_template" in str(refused.value)
    assert 'remove "pod_template" from [backends.k8s] task_overrides' in str(refused.value)
