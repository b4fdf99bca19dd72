"""Hostile and oversized requests, in process: every project, domain and name a route takes
follows one rule, directory uploads with absolute members are refused, each with a 4xx JSON
answer that says what to do."""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_api import Api, TestClient

from taskfabric.config import load_config
from taskfabric.console import mount
from taskfabric.server import create_app
from taskfabric.server._service import ControlPlane

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# Path parameters that carry a project, domain or name, and values no route may accept. The
# dots are percent-encoded so that the HTTP client sends them instead of resolving them.
NAMED = ("project", "domain", "name", "ref")
BAD = {
    "..": "%2E%2E",
    ".": "%2E",
    "over-long": "d" * 300,
    "newline": "shop%0A",
    "space": "a%20b",
}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    found = Api(tmp_path)
    mount(found.app)  # every route `taskfabric server` serves, the console's API too
    yield found
    found.plane.close()


def _routes(api: Api) -> list[tuple[str, str]]:
    paths = api.app.openapi()["paths"]
    return [(method.upper(), path) for path, ops in paths.items() for method in ops]


@pytest.mark.parametrize("bad", sorted(BAD))
def test_every_route_refuses_a_bad_project_domain_or_name(api: Api, bad: str) -> None:
    headers = {"Authorization": f"Bearer {api.token(['*'], 'admin')}"}
    good = {"project": "shop", "domain": "prod", "name": "n", "ref": "abc", "kind": "workflow"}
    good |= {"node_id": "n0", "token_id": "0" * 12}
    checked = 0
    for method, template in _routes(api):
        for param in (p for p in NAMED if "{" + p + "}" in template):
            values = {**good, param: BAD[bad]}
            path = re.sub(r"\{(\w+)(:path)?\}", lambda m, v=values: v[m.group(1)], template)
            response = api.http.request(method, path, headers=headers, params={"name": "f"})
            assert 400 <= response.status_code < 500, (method, path, response.text)
            assert response.headers["content-type"] == "application/json", (method, path)
            detail = response.json()["detail"]
            assert f"{param.replace('_', ' ')} " in detail and "is not valid: use" in detail, (
                method,
                path,
                detail,
            )
            checked += 1
    assert checked >= 20


@pytest.mark.parametrize("query", ["project", "domain"])
def test_query_parameters_follow_the_same_rule(api: Api, query: str) -> None:
    headers = {"Authorization": f"Bearer {api.token(['*'], 'admin')}"}
    response = api.http.get("/api/v1/executions", params={query: ".."}, headers=headers)
    assert response.status_code == 422
    assert f"{query} '..' is not valid" in response.json()["detail"]


def test_upload_names_and_bodies_follow_the_rule(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.token(['shop'], 'launcher')}"}
    url = "/api/v1/projects/shop/domains/prod/uploads"
    for name in ("..", ".", "a/b", "x" * 256, "/tmp/x"):
        response = api.http.post(url, params={"name": name}, content=b"x", headers=headers)
        assert response.status_code == 422, (name, response.text)
        assert "name" in response.json()["detail"] and "is not valid" in response.json()["detail"]
    for launch in (
        {"workflow": "../x"},
        {"launch_plan": "."},
        {"workflow": "w", "version": ".."},
        {"workflow": "w", "name": "n" * 256},
    ):
        response = api.http.post(
            "/api/v1/projects/shop/domains/prod/executions", json=launch, headers=headers
        )
        assert response.status_code == 422, (launch, response.text)
        assert "is not valid: use" in response.json()["detail"], response.text


@pytest.mark.parametrize("member", ["/tmp/x", "a/../../x", "../x"])
def test_a_directory_upload_with_an_absolute_or_climbing_member_is_refused(
    api: Api, member: str, tmp_path: Path
) -> None:
    headers = {"Authorization": f"Bearer {api.token(['shop'], 'launcher')}"}
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    response = api.http.post(
        "/api/v1/projects/shop/domains/prod/uploads",
        params={"name": "d", "kind": "directory"},
        content=archive.getvalue(),
        headers=headers,
    )
    assert response.status_code == 422, response.text
    assert f"unsafe archive member {member!r}" in response.json()["detail"]
    root = api.plane.engine.store.local_path(api.plane.engine.store.uri("uploads"))
    assert root is not None and not (root / "shop" / "prod" / "staged").exists()


def test_the_documented_rule_message_is_the_real_one(api: Api) -> None:
    docs = Path(__file__).resolve().parents[2] / "docs" / "server.md"
    documented = re.search(r"^invalid request: path\.domain: .*$", docs.read_text(), re.M)
    assert documented is not None
    headers = {"Authorization": f"Bearer {api.token(['shop'], 'viewer')}"}
    response = api.http.get("/api/v1/projects/shop/domains/%2E%2E/entities", headers=headers)
    assert response.json()["detail"] == documented.group(0)


class Limited(Api):
    """The app with small `[server]` limits."""

    LIMITS = {
        "max_request_bytes": 4096,
        "max_upload_bytes": 2000,
        "max_package_bytes": 1024,
        "max_input_bytes": 100,
        "max_input_string_length": 100,
        "max_input_items": 10,
    }

    def __init__(self, tmp: Path) -> None:
        cfg = tmp / "taskfabric.toml"
        cfg.write_text("[server]\n" + "".join(f"{k} = {v}\n" for k, v in self.LIMITS.items()))
        self.config = load_config(cfg)
        self.plane = ControlPlane(self.config)
        self.app = create_app(self.config, plane=self.plane)
        self.http = TestClient(self.app)
        self.tmp = tmp


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Limited]:
    found = Limited(tmp_path)
    yield found
    found.plane.close()


def _refused(response: httpx.Response, setting: str) -> str:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/json"
    detail: str = response.json()["detail"]
    limit = Limited.LIMITS[setting]
    assert f"[server] {setting}" in detail and f"at most {limit}" in detail, detail
    return detail


def test_bodies_inputs_and_uploads_over_the_limits_answer_413(limited: Limited) -> None:
    headers = {"Authorization": f"Bearer {limited.token(['shop'], 'admin')}"}
    scope = "/api/v1/projects/shop/domains/prod"
    limited.plane.registry.record(limited.package())  # a package over the limit itself
    launch = f"{scope}/executions"

    def post(inputs: dict[str, object]) -> httpx.Response:
        body = {"workflow": "srvflows.price", "inputs": inputs}
        return limited.http.post(launch, json=body, headers=headers)

    # A body over max_request_bytes, with its length told, and sent in chunks without it.
    _refused(post({"x": 1, "label": "y" * 5000}), "max_request_bytes")
    chunks = [b'{"workflow": "srvflows.price", "inputs": {"x": 1, "label": "', b"y" * 5000, b'"}}']
    chunked = limited.http.post(launch, content=iter(chunks), headers=headers)
    assert "content-length" not in chunked.request.headers
    _refused(chunked, "max_request_bytes")
    # Inputs: one string, one list or map at any depth, all of them as stored.
    detail = _refused(post({"x": 1, "label": "y" * 101}), "max_input_string_length")
    assert "input 'label': a string of 101 characters" in detail
    response = post({"x": {"deep": [list(range(11))]}})
    detail = _refused(response, "max_input_items")
    assert "input 'x': a list of 11 items at ['deep'][0]" in detail
    assert response.json()["input"] == "x"
    _refused(post({"x": 1, "label": "y" * 100}), "max_input_bytes")
    assert post({"x": 1, "label": "y" * 50}).status_code == 201
    # Uploads and registration packages have limits of their own.
    up = f"{scope}/uploads"

    def upload(content: bytes | Iterator[bytes]) -> httpx.Response:
        return limited.http.post(up, params={"name": "f"}, content=content, headers=headers)

    _refused(upload(b"x" * 2001), "max_upload_bytes")
    _refused(upload(iter([b"x" * 1500] * 2)), "max_upload_bytes")
    assert upload(b"x" * 2000).status_code == 201
    registration = f"{scope}/registrations"
    response = limited.http.post(registration, content=b"x" * 1025, headers=headers)
    _refused(response, "max_package_bytes")
