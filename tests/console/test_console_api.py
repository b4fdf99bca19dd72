"""The console's server side in process (FastAPI's TestClient): sign-in and the cookie
session with its CSRF check, the pages' headers, and the API routes the views use (graph,
node detail, text launch, diff, pools) with the same project scoping as the rest of the API.
The pages themselves are tested in a real browser (integration_tests/console)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import load_config
from taskfabric.console import mount
from taskfabric.console._session import COOKIE, csrf_for
from taskfabric.core.v1 import types_pb2
from taskfabric.pools import Holder, PoolManager, specs_from_config
from taskfabric.registry import LaunchError, build_package
from taskfabric.server import InputError, create_app, text_to_literal
from taskfabric.server._service import ControlPlane

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
FLOWS = Path(__file__).parent / "flows"
FANOUT = "console_api_flows.fanout"


def _client(app: Any, **kwargs: Any) -> Any:
    from fastapi.testclient import TestClient

    return TestClient(app, follow_redirects=False, **kwargs)


class Site:
    def __init__(self, tmp: Path, database: str | None) -> None:
        cfg = tmp / "taskfabric.toml"
        text = "[pools.ledger]\nslots = 3\nproject_caps = { shop = 2, bank = 1 }\n"
        if database is not None:
            text += f'\n[metadata]\nurl = "{database}"\n'
        cfg.write_text(text)
        self.config_path = cfg
        self.config = load_config(cfg)
        self.plane = ControlPlane(self.config)
        self.app = create_app(self.config, plane=self.plane)
        mount(self.app)
        self.shop = self.token(["shop"], "admin", "shop-admin")
        self.bank = self.token(["bank"], "admin", "bank-admin")

    def token(self, projects: list[str], role: str, name: str = "") -> str:
        return self.plane.tokens.create(projects=projects, role=role, name=name)[1]

    def http(self, token: str | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return _client(self.app, headers=headers)

    def run(self, execution_id: str) -> None:
        """Run a queued execution to its end, in a process of its own (as a worker does: a
        process loads one bundle per module)."""
        cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(self.config_path)]
        subprocess.run([*cmd, "executions", "resume", execution_id], check=True)

    def register(self, project: str, version: str = "v1") -> None:
        package = build_package(FLOWS, project=project, domain="prod", version=version)
        self.plane.registry.record(package)


@pytest.fixture(params=["sqlite", "postgres"])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    database = None
    if request.param == "postgres":
        database = request.getfixturevalue("postgres_schema")("tf_console")
    found = Site(tmp_path, database)
    yield found
    found.plane.close()


def _signed_in(site: Site, token: str) -> Any:
    http = _client(site.app)
    answer = http.post("/console/signin", data={"token": token, "next": "/console/pools"})
    assert answer.status_code == 303, answer.text
    return http


def test_sign_in_sets_an_httponly_strict_cookie_and_pages_need_it(site: Site) -> None:
    site.register("bank")
    http = _client(site.app)
    answer = http.get("/console/registry")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/signin?next=%2Fconsole%2Fregistry"
    assert http.get("/").headers["location"] == "/console/"

    wrong = http.post("/console/signin", data={"token": "tf_000000000000_" + "x" * 30})
    assert wrong.status_code == 401
    assert "the API token is unknown or revoked" in wrong.text
    assert COOKIE not in wrong.headers.get("set-cookie", "")

    answer = http.post("/console/signin", data={"token": site.shop, "next": "/console/pools"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/pools"
    cookie = answer.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie

    page = http.get("/console/registry")
    assert page.status_code == 200
    # Assets: under a path that changes with them, cached for good, never from another site.
    module = re.search(r'src="(/console/static/\w+/registry\.js)"', page.text)
    assert module is not None
    asset = http.get(module.group(1))
    assert asset.status_code == 200 and "immutable" in asset.headers["cache-control"]
    assert asset.headers["content-type"].startswith(("text/javascript", "application/javascript"))
    assert 'from "./lib.js"' in asset.text
    # Compressed for a browser that takes gzip, with an ETag that a reload revalidates by.
    source = (Path(mount.__code__.co_filename).parent / "static" / "registry.js").read_bytes()
    assert asset.headers["content-encoding"] == "gzip" and asset.content == source
    assert int(asset.headers["content-length"]) < len(source) / 2
    plain = http.get(module.group(1), headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == source
    again = http.get(module.group(1), headers={"If-None-Match": asset.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert http.get(module.group(1).replace("registry.js", "nope.js")).status_code == 404
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f'<meta name="csrf" content="{csrf_for(site.shop)}">' in page.text
    assert 'data-role="admin"' in page.text and "shop-admin" in page.text
    # The page holds the projects it lists (GET /projects' answer): those of the token only.
    assert _first_answers(page.text)["/api/v1/projects"] == http.get("/api/v1/projects").json()
    assert "bank" not in page.text


def _first_answers(page: str) -> dict[str, Any]:
    held = re.search(r'<script type="application/json" id="tf-initial">(.*?)</script>', page)
    assert held is not None, page
    found: dict[str, Any] = json.loads(held.group(1))
    return found


def test_pages_carry_the_answers_of_their_first_api_calls(site: Site) -> None:
    """Each page's HTML holds what its module's first GET calls answer, by their URLs, asked
    through the API in-process: the same answers as the browser's own calls would get."""
    site.register("shop")
    site.register("bank")
    http = _signed_in(site, site.shop)
    body = {"workflow": FANOUT, "inputs": {"n": "3"}}
    ref = http.post(
        "/api/v1/projects/shop/domains/prod/executions/from_text",
        json=body,
        headers={"X-CSRF-Token": csrf_for(site.shop)},
    ).json()["execution"]["id"]
    scope = "/api/v1/projects/shop/domains/prod"
    every_kind = f"{scope}/entities?kind=workflow&kind=task&kind=launch_plan"
    registry = ["/api/v1/projects", every_kind, f"{scope}/launch_plans"]
    expected = {
        "/console/": ["/api/v1/projects", "/api/v1/executions?limit=51"],
        "/console/?project=shop&phase=QUEUED&phase=FAILED&workflow=fan+out": [
            "/api/v1/projects",
            "/api/v1/executions?project=shop&workflow=fan+out&phase=QUEUED&phase=FAILED&limit=51",
        ],
        f"/console/executions/{ref}": [f"/api/v1/executions/{ref}/graph?values=true"],
        f"/console/launch/shop/prod/{FANOUT}": [f"{scope}/workflows/{FANOUT}"],
        f"/console/launch/shop/prod/{FANOUT}?version=v1": [
            f"{scope}/workflows/{FANOUT}?version=v1"
        ],
        "/console/launch": ["/api/v1/projects", f"{scope}/entities?kind=workflow"],
        "/console/registry": registry,
        "/console/registry?scope=shop/prod": registry,
        "/console/pools": ["/api/v1/pools"],
    }
    for path, urls in expected.items():
        page = http.get(path)
        assert page.status_code == 200, path
        held = _first_answers(page.text)
        assert sorted(held) == sorted(urls), path
        for url in urls:
            assert held[url] == http.get(url).json(), (path, url)
        assert "bank" not in page.text, path
    # One call for every kind the registry lists, each kind's entities in the order asked.
    kinds = [e["kind"] for e in http.get(every_kind).json()]
    assert kinds == sorted(kinds, key=["workflow", "task", "launch_plan"].index)
    assert {"workflow", "task"} <= set(kinds)
    # An answer that is not a 200 is left to the page, which asks and shows the error.
    missing = http.get("/console/executions/nope0000")
    assert missing.status_code == 200 and _first_answers(missing.text) == {}
    # A token of another project gets the answers of its own projects only.
    bank = _signed_in(site, site.bank).get("/console/registry")
    assert "bank" in bank.text and "shop" not in bank.text.replace("shop-", "")


def test_a_page_whose_first_call_fails_is_served_without_its_answer(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug behind an API call gives the call its 500 (logged), not the page: the page's
    module asks again and shows the API's answer."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug behind GET /projects")

    monkeypatch.setattr(site.plane, "projects", broken)
    http = _signed_in(site, site.shop)
    page = http.get("/console/registry")
    assert page.status_code == 200
    assert _first_answers(page.text) == {}
    direct = _client(site.app, raise_server_exceptions=False, headers=http.headers)
    direct.cookies = http.cookies
    assert direct.get("/api/v1/projects").status_code == 500


def test_an_answer_carried_in_a_page_cannot_close_its_element() -> None:
    from taskfabric.console import _inline

    text = _inline.script({"/api/v1/x": json.dumps({"a": "</script><script>alert(1)"}).encode()})
    assert text.count("</script>") == 1 and text.endswith("</script>")
    inside = text.removeprefix('<script type="application/json" id="tf-initial">')
    assert json.loads(inside.removesuffix("</script>")) == {
        "/api/v1/x": {"a": "</script><script>alert(1)"}
    }


def test_sign_in_refuses_other_origins_and_foreign_redirects(site: Site) -> None:
    http = _client(site.app)
    other = http.post(
        "/console/signin", data={"token": site.shop}, headers={"Origin": "http://evil.example"}
    )
    assert other.status_code == 403 and COOKIE not in other.headers.get("set-cookie", "")
    for target in ("https://evil.example/", "//evil.example/x", "/api/v1/tokens"):
        answer = http.post("/console/signin", data={"token": site.shop, "next": target})
        assert answer.headers["location"] == "/console/", target


def test_the_cookie_reads_the_api_and_changes_need_the_csrf_token(site: Site) -> None:
    site.register("shop")
    http = _signed_in(site, site.shop)
    assert http.get("/api/v1/whoami").json()["name"] == "shop-admin"
    launch = {"workflow": FANOUT, "inputs": {"n": "3"}}
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    refused = http.post(path, json=launch)
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    forged = http.post(path, json=launch, headers={"X-CSRF-Token": csrf_for(site.bank)})
    assert forged.status_code == 403
    made = http.post(path, json=launch, headers={"X-CSRF-Token": csrf_for(site.shop)})
    assert made.status_code == 201, made.text
    # A bearer token needs no CSRF token (it is not sent by browsers on their own).
    bearer = site.http(site.shop).post(path, json=launch)
    assert bearer.status_code == 201
    # Signing out needs the CSRF token too, and ends the session.
    assert http.post("/console/signout", data={"csrf": "nope"}).status_code == 403
    out = http.post("/console/signout", data={"csrf": csrf_for(site.shop)})
    assert out.status_code == 303 and 'tf_session=""' in out.headers["set-cookie"]
    assert http.get("/console/").status_code == 303
    # A revoked token ends its session at the next request.
    http = _signed_in(site, site.shop)
    site.plane.tokens.revoke(site.shop.split("_")[1])
    assert http.get("/console/").status_code == 303
    assert http.get("/api/v1/whoami").status_code == 401


def test_text_launch_answers_the_command_lines_messages(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    int_type = types_pb2.LiteralType(simple=types_pb2.SIMPLE_TYPE_INTEGER)
    with pytest.raises(InputError) as cli:
        text_to_literal("three", int_type, name="n")
    bad = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "three"}})
    assert bad.status_code == 422
    assert bad.json() == {"detail": str(cli.value), "input": "n"}
    unknown = http.post(path, json={"workflow": FANOUT, "inputs": {"m": "1"}})
    assert unknown.status_code == 422 and unknown.json()["input"] == "m"
    assert "its inputs are: n: int, label: str" in unknown.json()["detail"]
    # A missing input: the message a launch from the command line gets, naming the input
    # (the console shows it under that input's field).
    with pytest.raises(LaunchError) as local:
        site.plane.registry.prepare_workflow_launch("shop", "prod", FANOUT, inputs={})
    missing = http.post(path, json={"workflow": FANOUT, "inputs": {"label": "x"}})
    assert missing.status_code == 422
    assert missing.json() == {"detail": str(local.value), "input": "n", "inputs": ["n"]}
    assert str(local.value) == f"workflow '{FANOUT}' version v1: missing input n (int)"
    made = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "4"}, "name": "four"})
    assert made.status_code == 201 and made.json()["execution"]["name"] == "four"
    again = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "4"}, "name": "four"})
    assert again.status_code == 200
    viewer = site.http(site.token(["shop"], "viewer"))
    assert viewer.post(path, json={"workflow": FANOUT, "inputs": {"n": "4"}}).status_code == 403
    assert site.http(site.bank).post(path, json={"workflow": FANOUT}).status_code == 404


def test_executions_are_paged_by_keyset(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    for i in range(5):
        made = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "1"}, "name": f"k{i}"})
        assert made.status_code == 201
    newest = [e["name"] for e in http.get("/api/v1/executions").json()]
    assert newest == ["k4", "k3", "k2", "k1", "k0"]
    first = http.get("/api/v1/executions", params={"limit": 2}).json()
    second = http.get("/api/v1/executions", params={"limit": 2, "before": first[-1]["id"]})
    assert [e["name"] for e in second.json()] == ["k2", "k1"]
    last = http.get("/api/v1/executions", params={"limit": 2, "before": second.json()[-1]["id"]})
    assert [e["name"] for e in last.json()] == ["k0"]
    # Another project's token learns nothing from an id it cannot see.
    other = site.http(site.bank).get("/api/v1/executions", params={"before": first[-1]["id"]})
    assert other.json() == []


def test_text_launch_takes_uploaded_files(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    scope = "/api/v1/projects/shop/domains/prod"
    staged = http.post(
        f"{scope}/uploads", params={"name": "orders.csv"}, content=b"id\n1\n2\n"
    ).json()
    body = {"workflow": "console_api_flows.lines", "uploads": {"data": staged["ref"]}}
    made = http.post(f"{scope}/executions/from_text", json=body)
    assert made.status_code == 201, made.text
    site.run(made.json()["execution"]["id"])
    graph = http.get(f"/api/v1/executions/{made.json()['execution']['id']}/graph").json()
    assert graph["outputs"][0]["value"] == 3
    body["uploads"] = {"data": "file/" + "0" * 64 + "/orders.csv"}
    missing = http.post(f"{scope}/executions/from_text", json=body)
    assert missing.status_code == 422 and missing.json()["input"] == "data"
    assert "no upload" in missing.json()["detail"]
    # Another project's upload cannot be used here.
    site.register("bank")
    other = site.http(site.bank).post(
        "/api/v1/projects/bank/domains/prod/executions/from_text",
        json={"workflow": "console_api_flows.lines", "uploads": {"data": staged["ref"]}},
    )
    assert other.status_code == 422 and "no upload" in other.json()["detail"]


def test_graph_counts_map_items_by_phase_and_node_detail_is_typed(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    ran = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "5"}}).json()["execution"]
    queued = http.post(path, json={"workflow": FANOUT, "inputs": {"n": "2"}}).json()["execution"]
    site.run(ran["id"])

    graph = http.get(f"/api/v1/executions/{ran['id']}/graph").json()
    assert graph["execution"]["phase"] == "SUCCEEDED"
    nodes = {n["name"].split(".")[-1]: n for n in graph["nodes"]}
    assert [n["kind"] for n in graph["nodes"]] == ["task", "map", "task"]
    mapped = next(n for n in graph["nodes"] if n["kind"] == "map")
    assert mapped["children"] == {"SUCCEEDED": 5}
    assert mapped["upstream"] == [nodes["items"]["node_id"]]
    assert {p["name"]: (p["type"], p["value"]) for p in graph["inputs"]} == {
        "n": ("int", 5),
        "label": ("str", "none"),
    }
    assert graph["outputs"] == [{"name": "o0", "type": "int", "value": 20, "set": True}]
    lean = http.get(f"/api/v1/executions/{ran['id']}/graph", params={"values": "false"}).json()
    assert lean["inputs"] == [] and lean["nodes"] == graph["nodes"]

    detail = http.get(f"/api/v1/executions/{ran['id']}/nodes/{mapped['node_id']}/detail").json()
    assert detail["node"]["phase"] == "SUCCEEDED" and detail["children_total"] == 5
    assert [c["node_id"] for c in detail["children"]][:3] == [
        f"{mapped['node_id']}[{i}]" for i in range(3)
    ]
    assert detail["inputs"] == [
        {"name": "x", "type": "list[int]", "value": [0, 1, 2, 3, 4], "set": True}
    ]
    item = http.get(f"/api/v1/executions/{ran['id']}/nodes/{mapped['node_id']}[3]/detail").json()
    assert item["inputs"][0]["value"] == 3 and item["outputs"][0] == {
        "name": "o0",
        "type": "int",
        "value": 6,
        "set": True,
    }
    assert item["node"]["attempt_details"][0]["phase"] == "SUCCEEDED"

    waiting = http.get(f"/api/v1/executions/{queued['id']}/graph").json()
    assert {n["phase"] for n in waiting["nodes"]} == {"NOT STARTED"}
    first = waiting["nodes"][0]["node_id"]
    blank = http.get(f"/api/v1/executions/{queued['id']}/nodes/{first}/detail").json()
    assert blank["node"]["phase"] == "NOT STARTED" and blank["inputs"][0]["set"] is False
    missing = http.get(f"/api/v1/executions/{queued['id']}/nodes/n99/detail")
    assert missing.status_code == 404

    other = site.http(site.bank)
    assert other.get(f"/api/v1/executions/{ran['id']}/graph").status_code == 404
    detail_path = f"/api/v1/executions/{ran['id']}/nodes/{first}/detail"
    assert other.get(detail_path).status_code == 404


@pytest.mark.parametrize("packed", [True, False], ids=["packed", "rows"])
def test_a_maps_items_are_paged_in_order_and_filtered_by_phase(site: Site, packed: bool) -> None:
    """Items packed in chunk rows (materialized for the page), and items recorded as rows
    before migration 0010, page and filter alike."""
    from taskfabric.metadata import Batch, NodeRecord
    from taskfabric.metadata._schema import map_item_chunks, node_executions

    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    n = 120 if packed else 3
    ran = http.post(path, json={"workflow": FANOUT, "inputs": {"n": str(n)}}).json()["execution"]
    site.run(ran["id"])
    graph = http.get(f"/api/v1/executions/{ran['id']}/graph").json()
    mapped = next(n["node_id"] for n in graph["nodes"] if n["kind"] == "map")
    if packed:  # every tenth item but the first recorded FAILED, with an error
        batch = Batch()
        for i in range(10, 120, 10):
            error = {"code": "Boom", "message": "no"}
            item = f"{mapped}[{i}]"
            batch.node(
                NodeRecord(ran["id"], item, "map_item", "FAILED", parent_id=mapped, error=error)
            )
        site.plane.metadata.apply(batch)
    else:
        # 117 more items, as a map of 120 recorded them before 0010; every tenth failed.
        rows = [
            {
                "execution_id": ran["id"],
                "node_id": f"{mapped}[{i}]",
                "name": f"step[{i}]",
                "kind": "map_item",
                "parent_id": mapped,
                "phase": "FAILED" if i % 10 == 0 else "SUCCEEDED",
            }
            for i in range(3, 120)
        ]
        # the 3 items it ran as rows too, as before 0010
        ran_items = [vars(r) for r in site.plane.metadata.nodes(ran["id"]) if r.kind == "map_item"]
        with site.plane.metadata.engine.begin() as conn:
            conn.execute(node_executions.insert(), rows + [r | {"error": None} for r in ran_items])
            conn.execute(map_item_chunks.delete().where(map_item_chunks.c.map_id == mapped))
    items = f"/api/v1/executions/{ran['id']}/nodes/{mapped}/items"
    index = re.compile(r"\[(\d+)\]$")

    def indices(page: dict[str, Any]) -> list[int]:
        return [int(index.search(n["node_id"]).group(1)) for n in page["items"]]  # type: ignore[union-attr]

    first = http.get(items).json()
    assert indices(first) == list(range(50)) and first["next_after"] == f"{mapped}[49]"
    assert first["counts"] == {"SUCCEEDED": 109, "FAILED": 11} and first["total"] == 120
    second = http.get(items, params={"after": first["next_after"]}).json()
    assert indices(second) == list(range(50, 100))
    last = http.get(items, params={"after": second["next_after"]}).json()
    assert indices(last) == list(range(100, 120)) and last["next_after"] == ""
    failed = http.get(items, params={"phase": "FAILED", "limit": 5}).json()
    assert indices(failed) == [10, 20, 30, 40, 50] and failed["total"] == 11
    rest = http.get(items, params={"phase": "FAILED", "after": failed["next_after"]}).json()
    assert indices(rest) == [60, 70, 80, 90, 100, 110] and rest["next_after"] == ""
    both = http.get(items, params={"phase": ["FAILED", "SUCCEEDED"], "limit": 3}).json()
    assert indices(both) == [0, 1, 2] and both["total"] == 120
    # The panel's first page says what follows.
    detail = http.get(f"/api/v1/executions/{ran['id']}/nodes/{mapped}/detail").json()
    assert [c["node_id"] for c in detail["children"]] == [n["node_id"] for n in first["items"]]
    assert detail["children_total"] == 120 and detail["children_next"] == f"{mapped}[49]"
    assert detail["children_counts"] == first["counts"]
    bad = http.get(items, params={"after": "n0[3]"})
    assert bad.status_code == 422 and "not an item of node" in bad.json()["detail"]
    assert http.get(f"/api/v1/executions/{ran['id']}/nodes/n77/items").status_code == 404
    assert site.http(site.bank).get(items).status_code == 404


def test_graph_holds_sub_workflows_and_branch_cases(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    body = {"workflow": "console_api_flows.nested", "inputs": {"n": "3"}}
    queued = http.post(path, json=body).json()["execution"]
    before = http.get(f"/api/v1/executions/{queued['id']}/graph").json()["nodes"]
    sub, branch = before
    assert (sub["kind"], sub["children"]) == ("workflow", {"NOT STARTED": 3})
    assert [n["node_id"] for n in sub["nodes"]] == [f"{sub['node_id']}/n{i}" for i in range(3)]
    assert sub["nodes"][1]["upstream"] == [sub["nodes"][0]["node_id"]]
    assert [(c["case"], c["phase"]) for c in branch["nodes"]] == [
        ("case 1", "NOT STARTED"),
        ("else", "NOT STARTED"),
    ]
    # A declared node that has not started has a panel already, nested or not.
    first = sub["nodes"][0]["node_id"]
    blank = http.get(f"/api/v1/executions/{queued['id']}/nodes/{first}/detail").json()
    assert blank["node"]["phase"] == "NOT STARTED" and blank["node"]["parent_id"] == sub["node_id"]
    assert blank["inputs"] == [{"name": "n", "type": "int", "value": None, "set": False}]

    site.run(queued["id"])
    sub, branch = http.get(f"/api/v1/executions/{queued['id']}/graph").json()["nodes"]
    assert sub["phase"] == "SUCCEEDED" and sub["children"] == {"SUCCEEDED": 3}
    mapped = sub["nodes"][1]
    assert (mapped["kind"], mapped["children"]) == ("map", {"SUCCEEDED": 3})
    assert branch["children"] == {"NOT TAKEN": 1, "SUCCEEDED": 1}
    assert [(c["name"].split(".")[-1], c["case"], c["phase"]) for c in branch["nodes"]] == [
        ("big", "case 1", "NOT TAKEN"),
        ("small", "else", "SUCCEEDED"),
    ]
    # Nested nodes and map items have typed panels.
    item = http.get(f"/api/v1/executions/{queued['id']}/nodes/{mapped['node_id']}[2]/detail")
    assert item.json()["inputs"] == [{"name": "x", "type": "int", "value": 2, "set": True}]
    chosen = branch["nodes"][1]["node_id"]
    detail = http.get(f"/api/v1/executions/{queued['id']}/nodes/{chosen}/detail").json()
    assert detail["outputs"] == [{"name": "o0", "type": "str", "value": "small 6", "set": True}]
    inner = http.get(f"/api/v1/executions/{queued['id']}/nodes/{sub['node_id']}/detail").json()
    assert inner["inputs"][0]["value"] == 3 and inner["outputs"][0]["value"] == 6
    for bad in (f"{sub['node_id']}/n9", f"{mapped['node_id']}[0]/n0", "n0[1]"):
        found = http.get(f"/api/v1/executions/{queued['id']}/nodes/{bad}/detail")
        assert found.status_code == 404, bad


def test_files_and_dataframes_are_previewed_and_downloaded_by_name(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    ran = http.post(path, json={"workflow": "console_api_flows.tables", "inputs": {"n": "30"}})
    ran_id = ran.json()["execution"]["id"]
    site.run(ran_id)
    base = f"/api/v1/executions/{ran_id}/values"
    csv_file = http.get(f"{base}/preview", params={"side": "outputs", "name": "o0"}).json()
    assert (csv_file["kind"], csv_file["name"], csv_file["lines"]) == ("file", "rows.csv", 20)
    assert csv_file["text"].startswith("i,square\n0,0\n1,1\n") and csv_file["truncated"]
    assert csv_file["columns"] == ["i", "square"] and csv_file["rows"][3] == ["3", "9"]
    assert len(csv_file["rows"]) == 10
    frame = http.get(f"{base}/preview", params={"side": "outputs", "name": "o1", "rows": 5}).json()
    assert frame["kind"] == "dataframe" and frame["columns"] == ["i", "square"]
    assert frame["rows"] == [[i, i * i] for i in range(5)] and frame["total_rows"] == 30
    # The same file read from a node's values, inside a list.
    graph = http.get(f"/api/v1/executions/{ran_id}/graph").json()
    sizes = next(n["node_id"] for n in graph["nodes"] if n["name"].endswith("sizes"))
    inside = http.get(
        f"{base}/preview",
        params={"node": sizes, "side": "inputs", "name": "files", "at": "0", "lines": 2},
    ).json()
    assert inside["text"] == "i,square\n0,0\n" and inside["uri"] == csv_file["uri"]
    # The bytes, as an attachment that a browser never renders as a page.
    got = http.get(csv_file["download"])
    assert got.status_code == 200 and got.content.startswith(b"i,square\n0,0\n")
    assert len(got.content.splitlines()) == 31
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["content-disposition"] == "attachment; filename*=UTF-8''rows.csv"
    assert got.headers["x-content-type-options"] == "nosniff"
    parquet = http.get(frame["download"])
    assert parquet.status_code == 200 and parquet.content.startswith(b"PAR1")
    # Named, never by URI: what is not there, or not data, or elsewhere, is refused.
    for params, status in (
        ({"side": "outputs", "name": "o9"}, 404),
        ({"side": "outputs", "name": "o2"}, 422),
        ({"node": sizes, "side": "inputs", "name": "files", "at": "7"}, 404),
        ({"side": "elsewhere", "name": "o0"}, 422),
    ):
        assert http.get(f"{base}/preview", params=params).status_code == status, params
    other = site.http(site.bank)
    assert other.get(f"{base}/preview", params={"side": "outputs", "name": "o0"}).status_code == 404
    assert other.get(csv_file["download"]).status_code == 404


def test_directories_and_multi_part_dataframes_download_as_one_archive(site: Site) -> None:
    import io
    import tarfile
    import zipfile

    import pandas as pd
    import pyarrow.parquet as pq

    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    ran = http.post(path, json={"workflow": "console_api_flows.stock", "inputs": {"n": "3"}})
    ran_id = ran.json()["execution"]["id"]
    site.run(ran_id)
    base = f"/api/v1/executions/{ran_id}/values"
    folder = http.get(f"{base}/preview", params={"side": "outputs", "name": "o0"}).json()
    assert folder["kind"] == "directory"
    assert folder["files"] == ["item 1.txt", "item 2.txt", "shelf/item 0.txt"]
    top = folder["name"]
    expected = {
        f"{top}/item 1.txt": b"1\n1\n",
        f"{top}/item 2.txt": b"2\n2\n2\n",
        f"{top}/shelf/item 0.txt": b"0\n",
    }
    tar = http.get(folder["download"])
    assert tar.status_code == 200, tar.text
    assert tar.headers["content-disposition"] == (
        f"attachment; filename*=UTF-8''{top.replace(' ', '%20')}.tar"
    )
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        got = {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}  # type: ignore[union-attr]
    assert got == expected
    packed = http.get(folder["download"] + "&archive=zip")
    assert packed.status_code == 200, packed.text
    assert packed.headers["content-disposition"].endswith(".zip")
    with zipfile.ZipFile(io.BytesIO(packed.content)) as archive:
        assert archive.testzip() is None
        assert {n: archive.read(n) for n in archive.namelist()} == expected
    assert http.get(folder["download"] + "&archive=rar").status_code == 422

    # A dataframe stored as part files (as Spark writes one): previewed from its first part
    # with every part's rows counted, downloaded as one archive of its parts.
    ran = http.post(path, json={"workflow": "console_api_flows.tables", "inputs": {"n": "30"}})
    ran_id = ran.json()["execution"]["id"]
    site.run(ran_id)
    base = f"/api/v1/executions/{ran_id}/values"
    frame = http.get(f"{base}/preview", params={"side": "outputs", "name": "o1"}).json()
    stored = site.plane.engine.store.local_path(frame["uri"])
    assert stored is not None and stored.is_file()
    whole = pd.read_parquet(stored)
    stored.unlink()
    stored.mkdir()
    whole.iloc[:12].to_parquet(stored / "part-00000.parquet")
    whole.iloc[12:].to_parquet(stored / "part-00001.parquet")
    (stored / "_SUCCESS").write_bytes(b"")
    parts = http.get(f"{base}/preview", params={"side": "outputs", "name": "o1", "rows": 20})
    assert parts.status_code == 200, parts.text
    found = parts.json()
    assert found["total_rows"] == 30 and found["rows"] == [[i, i * i] for i in range(12)]
    assert found["files"] == ["_SUCCESS", "part-00000.parquet", "part-00001.parquet"]
    tar = http.get(found["download"])
    assert tar.status_code == 200, tar.text
    name = frame["name"].removesuffix(".parquet")
    assert tar.headers["content-disposition"] == f"attachment; filename*=UTF-8''{name}.tar"
    with tarfile.open(fileobj=io.BytesIO(tar.content)) as archive:
        names = sorted(m.name for m in archive)
        assert names == [
            f"{name}/_SUCCESS",
            f"{name}/part-00000.parquet",
            f"{name}/part-00001.parquet",
        ]
        archive.extractall(stored.parent / "unpacked", filter="data")
    back = pq.read_table(stored.parent / "unpacked" / name).to_pandas()
    assert back["square"].tolist() == [i * i for i in range(30)]


def test_node_detail_says_cache_hit_or_miss(site: Site) -> None:
    site.register("shop")
    http = site.http(site.shop)
    path = "/api/v1/projects/shop/domains/prod/executions/from_text"
    body = {"workflow": "console_api_flows.tables", "inputs": {"n": "3"}}
    first = http.post(path, json=body).json()["execution"]["id"]
    site.run(first)
    second = http.post(path, json=body).json()["execution"]["id"]
    site.run(second)
    found = {}
    for ran in (first, second):
        graph = http.get(f"/api/v1/executions/{ran}/graph").json()
        node = next(n for n in graph["nodes"] if n["name"].split(".")[-1] == "table")
        detail = http.get(f"/api/v1/executions/{ran}/nodes/{node['node_id']}/detail").json()
        found[ran] = (node["cache_status"], detail["node"]["cache_status"], detail["cache_source"])
    assert found == {first: ("written", "written", ""), second: ("hit", "hit", first)}


def test_diff_between_two_registered_versions(site: Site) -> None:
    site.register("shop", "v1")
    site.register("shop", "v2")
    http = site.http(site.shop)
    path = f"/api/v1/projects/shop/domains/prod/entities/workflow/{FANOUT}/diff"
    found = http.get(path, params={"old": "v1", "new": "v2"}).json()
    assert found["diff"].startswith(f"--- {FANOUT} v1\n+++ {FANOUT} v2\n")
    assert re.search(r'^-\s+version: "v1"$', found["diff"], re.M)
    assert re.search(r'^\+\s+version: "v2"$', found["diff"], re.M)
    same = http.get(path, params={"old": "v1", "new": "v1"}).json()
    assert same["diff"] == ""
    missing = http.get(path, params={"old": "v1", "new": "v9"})
    assert missing.status_code == 404 and "registered versions: v2, v1" in missing.text
    assert site.http(site.bank).get(path, params={"old": "v1", "new": "v2"}).status_code == 404


def test_pools_name_only_what_the_token_sees(site: Site) -> None:
    specs = specs_from_config(site.config)
    manager = PoolManager(site.plane.metadata.engine, specs, owner="test:1")
    try:
        assert manager.request(Holder("e-shop", "n0", 1, "shop", "prod"), {"ledger": 1})
        assert manager.request(Holder("e-bank", "n0", 1, "bank", "prod"), {"ledger": 1})
        assert manager.request(Holder("e-bank2", "n0", 1, "bank", "prod"), {"ledger": 1}) is None
        (shop,) = site.http(site.shop).get("/api/v1/pools").json()
        assert shop["in_use"] == 2 and shop["slots"] == 3
        assert [h["execution_id"] for h in shop["holders"]] == ["e-shop"]
        assert shop["hidden_holders"] == 1 and shop["hidden_waiters"] == 1
        assert shop["waiters"] == [] and shop["project_caps"] == {"shop": 2}
        (bank,) = site.http(site.bank).get("/api/v1/pools").json()
        assert [w["execution_id"] for w in bank["waiters"]] == ["e-bank2"]
        assert bank["waiters"][0]["position"] == 1 and bank["project_caps"] == {"bank": 1}
        assert "shop" not in str(bank)
        # Pushbacks, newest first; one of another project only counted as such.
        assert shop["pushbacks"] == []
        manager.pushback("ledger", 30, holder=Holder("e-shop", "n0", 1, "shop", "prod"))
        manager.pushback("ledger", 5)
        (shop,) = site.http(site.shop).get("/api/v1/pools").json()
        newest, older = shop["pushbacks"]
        assert (newest["seconds"], newest["execution_id"], newest["hidden"]) == (5, "", False)
        assert (older["seconds"], older["execution_id"], older["node_id"]) == (30, "e-shop", "n0")
        assert newest["paused_until"] == older["paused_until"] >= older["at"] + 30
        (bank,) = site.http(site.bank).get("/api/v1/pools", params={"pushbacks": 1}).json()
        assert len(bank["pushbacks"]) == 1
        (bank,) = site.http(site.bank).get("/api/v1/pools").json()
        assert bank["pushbacks"][1]["hidden"] is True and "shop" not in str(bank)
    finally:
        manager.close()
