"""A multi-tenant server's tasks on the podman backend (issue 21): registered code runs in its
container from the execution's code bundle, sees no config, no database, no environment
variable of the engine's and none of another project's data, and what it leaves cannot point
the engine at a file it was not given (a link as its outputs document, a link among its
outputs)."""

from __future__ import annotations

import json
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric.registry import build_package
from taskfabric.server import Client, ControlPlane, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# Project alpha's registered code. What it looks for comes as inputs, so its own source (which
# its container sees) names none of it.
ALPHA = """
import json
import os
import sys
from pathlib import Path

from taskfabric import task, workflow


@task
def probe(paths: list[str], secret: str, mode: str) -> str:
    outputs = next(a for a in sys.argv if a.startswith("file://") and a.endswith("outputs.pb"))
    if mode == "link-outputs":  # the outputs document: a link to another project's file
        os.symlink(paths[-1], outputs.removeprefix("file://"))
        os._exit(0)
    if mode == "link-raw":  # a link in its own output folder, to the config
        raw = sys.argv[sys.argv.index("--raw-prefix") + 1].removeprefix("file://")
        os.makedirs(raw, exist_ok=True)
        os.symlink(paths[0], os.path.join(raw, "config"))
        return "left a link"
    found = [p for p in paths if os.path.exists(p)]
    found += [k for k, v in os.environ.items() if secret in v or k.startswith("TASKFABRIC")]
    return json.dumps({"found": found, "uid": os.getuid(), "caps": _caps()})


def _caps() -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return line.split()[1]
    return "?"


@workflow
def snooping(paths: list[str], secret: str, mode: str = "look") -> str:
    return probe(paths=paths, secret=secret, mode=mode)
"""


@pytest.fixture
def server(
    tmp_path: Path, podman_url: str, task_image: str, plugins: Plugins
) -> Iterator[tuple[Path, ControlPlane, Client]]:
    from starlette.testclient import TestClient

    home = tmp_path / "home"
    home.mkdir()
    config_path = home / "taskfabric.toml"
    config_path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{home / "data"}"

            [task_types]
            python = "podman"

            [backends.podman]
            driver = "podman"
            url = "{podman_url}"
            image = "{task_image}"
            kill_grace_seconds = 1
            """)
    )
    config = load_config(config_path)
    plane = ControlPlane(config, engine=Engine(config, isolate_code=True))
    app = create_app(config, plane=plane)
    token = plane.tokens.create(projects=["alpha"], role="admin", name="alpha")[1]
    client = Client("http://testserver", token, http=TestClient(app))
    yield config_path, plane, client
    plane.close()


def _run(config_path: Path, client: Client, module: str, inputs: dict[str, object]) -> str:
    launched = client.launch("alpha", "prod", workflow=f"{module}.snooping", inputs=inputs)
    engine = Engine(load_config(config_path), isolate_code=True)  # a multi-tenant worker
    try:
        engine.resume(launched.execution.id)
    finally:
        engine.close()
    return launched.execution.id


def test_registered_code_in_a_container_sees_only_its_attempt(
    tmp_path: Path, server: tuple[Path, ControlPlane, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path, plane, client = server
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("TASKFABRIC_TOKEN", f"tf_x_{secret}")  # in the worker's environment
    monkeypatch.setenv("DATABASE_URL", f"postgresql://u:{secret}@db/x")
    beta_file = plane.config.data_root / "uploads" / "beta" / "rows.csv"
    beta_file.parent.mkdir(parents=True)
    beta_file.write_text("beta's rows")
    module = f"alphaflows_{uuid.uuid4().hex[:8]}"
    src = tmp_path / "alpha-src"
    src.mkdir()
    (src / f"{module}.py").write_text(ALPHA)
    client.register(build_package(src, project="alpha", domain="prod", version="v1"))
    database = plane.config.data_root / "taskfabric.db"
    paths = [str(config_path), str(database), str(beta_file)]

    looked = _run(config_path, client, module, {"paths": paths, "secret": secret})
    detail = client.execution(looked)
    assert detail.execution.phase == "SUCCEEDED", detail.execution.error
    report = json.loads(detail.outputs["o0"])
    assert report["found"] == []  # nothing of the server's, nothing of beta's
    assert report["caps"] == "0000000000000000"  # no capability, whatever its uid

    linked = _run(
        config_path, client, module, {"paths": paths, "secret": "", "mode": "link-outputs"}
    )
    error = client.execution(linked).execution.error
    assert error is not None and "without writing its outputs" in error.message, error

    raw = _run(config_path, client, module, {"paths": paths, "secret": "", "mode": "link-raw"})
    error = client.execution(raw).execution.error
    assert error is not None and error.code == "SandboxRefused", error
    assert "left a link in its output folder (config)" in error.message, error
    assert not any(p.is_symlink() for p in plane.config.data_root.rglob("config"))
