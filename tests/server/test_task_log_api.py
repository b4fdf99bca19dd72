"""`GET /api/v1/executions/{ref}/logs/{node}`: a task's attempt log through the API, read in
pieces by offset (how the CLI's `--follow` and a web console stream it), scoped by project."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric import map_task, task, tasklogs, workflow
from taskfabric.config import load_config
from taskfabric.server import Client, ServerError, create_app
from taskfabric.server._service import ControlPlane
from taskfabric.tasklogs import live_log_path

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


@task
def chatty(x: int) -> int:
    for i in range(x):
        print(f"{x}: line {i} é")
    print("done", file=sys.stderr)
    return x


@workflow
def fan(xs: list[int]) -> list[int]:
    return map_task(chatty)(x=xs)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    cfg = tmp_path / "taskfabric.toml"
    cfg.write_text("[server]\nauth = true\n")
    found = ControlPlane(load_config(cfg))
    yield found
    found.close()


def _client(plane: ControlPlane, projects: list[str]) -> Client:
    from fastapi.testclient import TestClient

    token = plane.tokens.create(projects=projects, role="viewer", name="t")[1]
    app: Any = create_app(plane.config, plane=plane)
    return Client("http://testserver", token, http=TestClient(app))


def test_a_task_log_is_read_in_pieces_through_the_api(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = plane.engine.launch(fan, {"xs": [3, 2000]}, project="shop", domain="prod")
    assert result.phase == "SUCCEEDED", result.error
    client = _client(plane, ["shop"])
    small = client.task_log(result.execution_id, "n0[0]")
    assert small.text == "3: line 0 é\n3: line 1 é\n3: line 2 é\ndone\n"
    assert small.complete and small.attempt == 1 and small.attempts == 1
    assert small.phase == "SUCCEEDED" and small.next_offset == len(small.text.encode())
    # The live file may go (another machine, a cleaned work folder): the stored copy is read.
    rec = plane.engine.find_execution(result.execution_id)
    live_log_path(plane.engine.work_root, rec.id, "n0[1]", 1).unlink()
    monkeypatch.setattr(tasklogs, "CHUNK_BYTES", 1001)  # pieces that cut an é in two
    text, offset, calls = "", 0, 0
    while True:
        piece = client.task_log(result.execution_id, "n0[1]", attempt=1, offset=offset)
        assert piece.source == "stored" and piece.offset == offset
        text += piece.text
        offset, calls = piece.next_offset, calls + 1
        if piece.complete:
            break
    lines = text.splitlines()
    assert lines[0] == "2000: line 0 é" and lines[-2:] == ["2000: line 1999 é", "done"]
    assert len(lines) == 2001 and "\ufffd" not in text
    assert calls > len(text.encode()) // 1001  # it took many pieces


def test_unknown_nodes_and_other_projects_are_404(plane: ControlPlane) -> None:
    result = plane.engine.launch(fan, {"xs": [1]}, project="shop", domain="prod")
    with pytest.raises(ServerError) as caught:
        _client(plane, ["shop"]).task_log(result.execution_id, "n9")
    assert caught.value.status == 404 and "has no attempt" in str(caught.value)
    with pytest.raises(ServerError) as caught:
        _client(plane, ["shop"]).task_log(result.execution_id, "n0[0]", attempt=2)
    assert caught.value.status == 404 and "it has 1" in str(caught.value)
    with pytest.raises(ServerError) as caught:
        _client(plane, ["bank"]).task_log(result.execution_id, "n0[0]")
    assert caught.value.status == 404
