"""`[server] max_value_bytes`: the API never reads a stored inputs or outputs document over
it. A view of many values (`executions show`, the console's graph) leaves it out and says
why; a route that is about the values answers 413 with the setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import load_config
from taskfabric.console import mount
from taskfabric.sdk import task, workflow
from taskfabric.server import Client, ServerError, create_app
from taskfabric.server._service import ControlPlane

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@task
def long_text(n: int) -> str:
    return "y" * n


@task
def count(s: str) -> int:
    return len(s)


@workflow
def measured(n: int) -> int:
    return count(s=long_text(n=n))


def test_the_api_reads_no_document_over_max_value_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.testclient import TestClient

    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n'
        "[server]\nsingle_tenant = true\nmax_value_bytes = 2048\n"
    )
    config = load_config(cfg)
    plane = ControlPlane(config)
    try:
        done = plane.engine.launch(measured, {"n": 5000})
        assert done.phase == "SUCCEEDED"
        big = next(n for n in plane.metadata.nodes(done.execution_id) if n.node_id == "n0")
        read: list[str] = []
        real_get = plane.engine.literals.get

        def get(uri: str) -> Any:
            read.append(uri)
            return real_get(uri)

        monkeypatch.setattr(plane.engine.literals, "get", get)
        app = create_app(config, plane=plane)
        mount(app)
        token = plane.tokens.create(projects=["*"], role="viewer", name="v")[1]
        client = Client("http://testserver", token, http=TestClient(app))

        shown = client.execution(done.execution_id, display=True)
        assert "n0" in shown.omitted, shown.omitted
        assert "[server] max_value_bytes" in shown.omitted["n0"]
        assert shown.display is not None and shown.display.nodes["n0"].startswith("(too large")
        small = next(n for n in shown.nodes if n.node_id == "n1")
        assert small.outputs == {"o0": 5000}
        assert shown.outputs == {"o0": 5000}

        with pytest.raises(ServerError) as caught:
            client.node_data(done.execution_id, "n0")
        assert caught.value.status == 413
        assert "2048 bytes the server reads for a request ([server] max_value_bytes)" in str(
            caught.value
        )
        graph = client._request("GET", f"/api/v1/executions/{done.execution_id}/graph")
        assert graph["execution"]["id"] == done.execution_id
        assert big.outputs_uri not in read, "the large document was read"
    finally:
        plane.close()
