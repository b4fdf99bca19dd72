"""A real server, on SQLite and PostgreSQL, under concurrent and hostile requests: same-name
launches sent at once make one execution, identical launches replay it (200) and launches with
other inputs are refused (409); paths that climb out are refused before they reach the disk."""

from __future__ import annotations

import http.client
import json
import re
import threading
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from server_helpers import Site, write_flows

from taskfabric.registry import build_package
from taskfabric.server import Client

RACERS = 8


def _race(url: str, token: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body at the same moment, each on a connection of its own."""
    start = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)
    path = "/api/v1/projects/shop/domains/prod/executions"

    def send(i: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            http.get("/healthz")  # connected before the barrier
            start.wait()
            answers[i] = http.post(path, json=bodies[i], timeout=60)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_concurrent_same_name_launches_make_one_execution(site: Site, tmp_path: Path) -> None:
    server = site.server(workers=0)
    token = site.token(["shop"], "admin")
    admin = Client(server.url, token)
    reg = admin.register(
        build_package(write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1")
    )
    wf = next(e.name for e in reg.entities if e.kind == "workflow" and e.name.endswith("price"))

    # The same launch eight times at once: one creates, seven replay it.
    same = _race(server.url, token, [{"workflow": wf, "inputs": {"x": 1}, "name": "n1"}] * RACERS)
    assert sorted(a.status_code for a in same) == [200] * (RACERS - 1) + [201], [
        a.text for a in same
    ]
    assert len({a.json()["execution"]["id"] for a in same}) == 1
    assert sorted(a.json()["created"] for a in same) == [False] * (RACERS - 1) + [True]

    # Eight launches of one name with eight different inputs: one wins, seven are refused.
    bodies = [{"workflow": wf, "inputs": {"x": i}, "name": "n2"} for i in range(RACERS)]
    other = _race(server.url, token, bodies)
    codes = sorted(a.status_code for a in other)
    assert codes == [201] + [409] * (RACERS - 1), [a.text for a in other]
    winner = next(a for a in other if a.status_code == 201).json()["execution"]
    for refused in (a for a in other if a.status_code == 409):
        assert "n2" in refused.json()["detail"] and "other inputs" in refused.json()["detail"]
    names = [e for e in admin.executions(project="shop") if e.name == "n2"]
    assert [e.id for e in names] == [winner["id"]]
    # The winner's own inputs are the execution's: a replay with them is a 200.
    x = next(b["inputs"]["x"] for b in bodies if b["inputs"]["x"] == _inputs(admin, winner["id"]))
    replay = admin.launch("shop", "prod", workflow=wf, inputs={"x": x}, name="n2")
    assert not replay.created and replay.execution.id == winner["id"]


def _inputs(client: Client, execution_id: str) -> int:
    found = client.execution(execution_id).inputs
    assert found is not None
    value = found["x"]
    assert isinstance(value, int)
    return value


def test_hostile_paths_huge_inputs_and_a_failing_route(site: Site, tmp_path: Path) -> None:
    server = site.server(workers=0)
    token = site.token(["shop"], "admin")
    headers = {"Authorization": f"Bearer {token}"}

    # Upload paths that climb out, sent raw (no client resolves the dots) to uvicorn.
    root = site.config.data_root
    for domain in ("..", ".", "d" * 300):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request(
            "POST", f"/api/v1/projects/shop/domains/{domain}/uploads?name=x", b"x", headers
        )
        answer = conn.getresponse()
        body = json.loads(answer.read())
        conn.close()
        assert answer.status == 422, body
        assert f"domain {domain[:70]!r}"[:20] in body["detail"] and "is not valid" in body["detail"]
    assert not any(p.name == "x" for p in root.rglob("x")), sorted(root.rglob("*"))

    # A huge string, list or body, with the default limits.
    Client(server.url, token).register(
        build_package(write_flows(tmp_path / "src", 2), project="shop", domain="prod", version="v1")
    )
    launch = f"{server.url}/api/v1/projects/shop/domains/prod/executions"
    huge_string = {"workflow": "srvflows.price", "inputs": {"x": 1, "label": "y" * 1_000_001}}
    answer = httpx.post(launch, json=huge_string, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text
    assert "[server] max_input_string_length" in answer.json()["detail"]
    huge_list = {"workflow": "srvflows.fanout", "inputs": {"n": [0] * 100_001}}
    answer = httpx.post(launch, json=huge_list, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text
    assert "[server] max_input_items" in answer.json()["detail"]
    huge_body = b'{"workflow": "srvflows.price", "inputs": {"x": 1, "label": "' + b"y" * (17 << 20)
    answer = httpx.post(launch, content=huge_body, headers=headers, timeout=60)
    assert answer.status_code == 413, answer.text
    assert "[server] max_request_bytes" in answer.json()["detail"]
    assert Client(server.url, token).executions() == []

    # A route that fails (its table is gone): a JSON 500, and a log line with the request,
    # the exception's type and its traceback, once.
    with site._metadata.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE executions RENAME TO executions_gone"))
    answer = httpx.get(f"{server.url}/api/v1/executions", headers=headers, timeout=60)
    assert answer.status_code == 500
    kind = answer.json()["detail"].split("(")[1].split(")")[0]
    assert kind.startswith("sqlalchemy.exc."), answer.text
    log = server.log.read_text()
    line = next(ln for ln in log.splitlines() if "request failed" in ln)
    assert "path=/api/v1/executions" in line and f"error_type={kind}" in line, line
    after = log[log.index(line) :]
    assert "Traceback (most recent call last)" in after and "executions" in after
    assert "Exception in ASGI application" not in log


def test_docs_pages_load_only_local_assets(tmp_path: Path) -> None:
    """/docs and /redoc of a real server reference no other host, and what they reference is
    served: they work without internet."""
    site = Site(tmp_path, None)
    try:
        server = site.server(workers=0)
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for page in ("/docs", "/redoc"):
                html = http.get(page)
                assert html.status_code == 200 and "text/html" in html.headers["content-type"]
                assert "://" not in html.text.replace("window.location.origin", ""), html.text
                urls = re.findall(r"""(?:src|href|spec-url)="([^"]+)"|url: '([^']+)'""", html.text)
                found = {a or b for a, b in urls}
                assert len(found) >= (4 if page == "/docs" else 3), found
                for url in found:
                    assert url.startswith("/") and not url.startswith("//"), url
                    answer = http.get(url)
                    assert answer.status_code == 200 and len(answer.content) > 1000, url
    finally:
        site.close()
