"""The HTTP API in process (FastAPI's TestClient): validation, roles, project scoping,
idempotent launches, registration, the OpenAPI document. No workers run here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import write_flows

from taskfabric.config import load_config
from taskfabric.registry import Package, build_package
from taskfabric.server import Client, ServerError, create_app
from taskfabric.server._schema import api_tokens
from taskfabric.server._service import ControlPlane

# Starlette asks for its `httpx2` in its TestClient; nothing this project can act on.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def TestClient(app: Any) -> Any:  # noqa: N802 - reads like the class it stands for
    from fastapi.testclient import TestClient as _TestClient

    return _TestClient(app)


class Api:
    def __init__(self, tmp: Path, auth: bool = True, database: str | None = None) -> None:
        cfg = tmp / "taskfabric.toml"
        text = f"[server]\nauth = {'true' if auth else 'false'}\n"
        if database is not None:
            text += f'\n[metadata]\nurl = "{database}"\n'
        cfg.write_text(text)
        self.config = load_config(cfg)
        self.plane = ControlPlane(self.config)
        self.app = create_app(self.config, plane=self.plane)
        self.http = TestClient(self.app)
        self.tmp = tmp

    def token(self, projects: list[str], role: str, name: str = "") -> str:
        return self.plane.tokens.create(projects=projects, role=role, name=name)[1]

    def client(self, token: str | None) -> Client:
        return Client("http://testserver", token, http=TestClient(self.app))

    def package(self, project: str = "shop", version: str = "v1", factor: int = 2) -> Package:
        src = write_flows(self.tmp / f"src-{project}-{version}-{factor}", factor)
        return build_package(src, project=project, domain="prod", version=version)


@pytest.fixture
def api(tmp_path: Path, database: str | None) -> Iterator[Api]:
    """The app on SQLite and on PostgreSQL."""
    found = Api(tmp_path, database=database)
    yield found
    found.plane.close()


@pytest.fixture
def admin(api: Api) -> Client:
    c = api.client(api.token(["shop"], "admin", "shop-admin"))
    c.register(api.package())
    return c


def _status(call: Any) -> int:
    with pytest.raises(ServerError) as caught:
        call()
    return caught.value.status


def test_openapi_document_describes_the_api(api: Api) -> None:
    doc = api.http.get("/openapi.json").json()
    paths = doc["paths"]
    for path in (
        "/api/v1/projects/{project}/domains/{domain}/executions",
        "/api/v1/executions/{ref}",
        "/api/v1/executions/{ref}/recover",
        "/api/v1/projects/{project}/domains/{domain}/registrations",
        "/api/v1/projects/{project}/domains/{domain}/launch_plans/{name}/activate",
        "/api/v1/tokens",
    ):
        assert path in paths, path
    launch = paths["/api/v1/projects/{project}/domains/{domain}/executions"]["post"]
    assert launch["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/LaunchRequest"
    )
    assert {"201", "200", "401", "403", "404", "422"} <= set(launch["responses"])
    schemas = doc["components"]["schemas"]
    assert "name" in schemas["LaunchRequest"]["properties"]
    assert schemas["LaunchRequest"]["properties"]["inputs"]["description"]
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert (
        "application/x-tar"
        in (
            paths["/api/v1/projects/{project}/domains/{domain}/registrations"]["post"][
                "requestBody"
            ]["content"]
        )
    )


def test_tokens_are_required_stored_hashed_and_revocable(api: Api) -> None:
    assert api.http.get("/healthz").json()["status"] == "ok"
    response = api.http.get("/api/v1/executions")
    assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
    assert "TASKFABRIC_TOKEN" in response.json()["detail"]
    info, token = api.plane.tokens.create(projects=["shop"], role="viewer", name="ci")
    assert api.client(token).whoami().projects == ["shop"]
    forged = token[:-4] + ("aaaa" if not token.endswith("aaaa") else "bbbb")
    assert _status(lambda: api.client(forged).whoami()) == 401
    assert _status(lambda: api.client("nonsense").whoami()) == 401
    with api.plane.metadata.engine.connect() as conn:
        row = conn.execute(sa.select(api_tokens).where(api_tokens.c.id == info.id)).one()
    assert token not in str(tuple(row)) and len(row.secret_hash) == 64
    assert api.plane.tokens.revoke(info.id)
    assert _status(lambda: api.client(token).whoami()) == 401


def test_auth_can_be_turned_off_explicitly(tmp_path: Path) -> None:
    open_api = Api(tmp_path, auth=False)
    me = open_api.client(None).whoami()
    assert me.role == "admin" and me.projects == ["*"] and not me.auth
    open_api.plane.close()


def test_roles(api: Api, admin: Client) -> None:
    viewer = api.client(api.token(["shop"], "viewer"))
    launcher = api.client(api.token(["shop"], "launcher"))
    run = launcher.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 1})
    assert viewer.execution(run.execution.id).execution.phase == "QUEUED"
    assert viewer.entities("shop", "prod")[0].name == "srvflows.fanout"
    ref = run.execution.id
    for call in (
        lambda: viewer.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 1}),
        lambda: viewer.cancel(ref),
        lambda: viewer.relaunch(ref),
        lambda: viewer.recover(ref),
        lambda: launcher.register(api.package(version="v2")),
        lambda: launcher.activate("shop", "prod", "tick", "v1"),
        launcher.tokens,
        lambda: launcher.create_token(["shop"], "viewer"),
    ):
        assert _status(call) == 403
    assert launcher.cancel(ref).phase == "ABORTED"
    assert launcher.recover(ref).phase == "QUEUED"
    assert admin.activate("shop", "prod", "tick", "v1").active_version == "v1"
    assert admin.deactivate("shop", "prod", "tick").changed


def test_a_project_token_sees_nothing_of_another_project(api: Api, admin: Client) -> None:
    other = api.client(api.token(["bank"], "admin"))
    run = admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 1}, name="r")
    assert other.executions() == [] and other.executions(project="shop") == []
    assert [p.name for p in other.projects()] == ["bank"]
    assert "shop" in [p.name for p in admin.projects()]
    for call in (
        lambda: other.execution(run.execution.id),
        lambda: other.execution("r"),
        lambda: other.execution(run.execution.id[:4]),
        lambda: other.entities("shop", "prod"),
        lambda: other.workflow("shop", "prod", "srvflows.price"),
        lambda: other.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 1}),
        lambda: other.register(api.package()),
        lambda: other.cancel(run.execution.id),
        lambda: other.recover(run.execution.id),
        lambda: other.launch_plans("shop", "prod"),
        lambda: other.deactivate("shop", "prod", "tick"),
        lambda: other.create_token(["shop"], "viewer"),
    ):
        assert _status(call) == 404
    # Not found says the same whether or not the project exists.
    missing = api.http.get(
        "/api/v1/projects/nowhere/domains/prod/entities",
        headers={"Authorization": other._http.headers["Authorization"]},
    ).json()["detail"]
    assert missing == "no project 'nowhere' (or this token cannot see it)"


def test_invalid_inputs_are_422_naming_the_input(api: Api, admin: Client) -> None:
    def problem(body: dict[str, Any]) -> dict[str, Any]:
        response = api.http.post(
            "/api/v1/projects/shop/domains/prod/executions",
            json=body,
            headers={"Authorization": admin._http.headers["Authorization"]},
        )
        assert response.status_code == 422, response.text
        found: dict[str, Any] = response.json()
        return found

    wf = {"workflow": "srvflows.price"}
    bad = problem({**wf, "inputs": {"x": "three"}})
    assert bad == {
        "detail": "input 'x': expected an integer, got string 'three' (the input is int)",
        "input": "x",
    }
    unknown = problem({**wf, "inputs": {"x": 1, "colour": "red"}})
    assert unknown["input"] == "colour" and "x: int, label: str" in unknown["detail"]
    assert "missing input x (int)" in problem({**wf, "inputs": {}})["detail"]
    assert problem({**wf, "inputs": [1]})["detail"].startswith("invalid request: inputs:")
    assert "name" in problem({**wf, "name": "no spaces please"})["detail"]
    assert "one of them" in problem({**wf, "launch_plan": "tick"})["detail"]
    fixed = problem({"launch_plan": "tick", "inputs": {"x": 2}})["detail"]
    assert "fixed by the launch plan" in fixed
    nested = problem({"workflow": "srvflows.fanout", "inputs": {"n": True}})
    assert nested["detail"].startswith("input 'n': expected an integer, got boolean true")


def test_launch_is_idempotent_by_name(api: Api, admin: Client) -> None:
    first = admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 2}, name="n1")
    again = admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 2}, name="n1")
    assert first.created and not again.created
    assert again.execution.id == first.execution.id
    status = _status(
        lambda: admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 3}, name="n1")
    )
    assert status == 409
    assert len(admin.executions(workflow="price")) == 1
    # the launch plan's fixed input, the workflow's default
    planned = admin.launch("shop", "prod", launch_plan="tick", name="p1")
    detail = admin.execution("p1", display=True)
    assert detail.inputs == {"x": 1, "label": "none"}
    assert planned.execution.launch_plan == "tick:v1"
    assert detail.display is not None and detail.display.inputs == {"label": '"none"', "x": "1"}
    assert [n.phase for n in detail.nodes] == ["NOT STARTED"]
    assert _status(lambda: admin.node_data("p1", "n0")) == 404


def test_cancel_relaunch_and_recover(api: Api, admin: Client) -> None:
    run = admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 7}, name="c")
    assert admin.cancel("c", "not today").phase == "ABORTED"
    shown = admin.execution("c", events=True)
    assert shown.execution.error is not None and "not today" in shown.execution.error.message
    assert (
        _status(
            lambda: admin.recover(
                admin.launch(
                    "shop", "prod", workflow="srvflows.price", inputs={"x": 1}
                ).execution.id
            )
        )
        == 409
    )
    again = admin.relaunch("c", name="c2")
    assert again.created and again.execution.name == "c2"
    assert admin.execution("c2").inputs == {"x": 7, "label": "none"}
    recovered = admin.recover(run.execution.id)
    assert recovered.phase == "QUEUED" and recovered.error is None
    events = admin.execution(run.execution.id, events=True).events
    assert events[-1].phase == "QUEUED" and "recover requested by shop-admin" in events[-1].message


def test_registration_over_http(api: Api, admin: Client) -> None:
    assert admin.register(api.package()).unchanged
    assert _status(lambda: admin.register(api.package(factor=5))) == 409
    with pytest.raises(ServerError) as caught:
        admin.register(api.package(factor=5))
    assert "registered versions are immutable" in str(caught.value)
    headers = {"Authorization": admin._http.headers["Authorization"]}
    url = "/api/v1/projects/shop/domains/prod/registrations"
    garbage = api.http.post(url, content=b"not a tar", headers=headers)
    assert garbage.status_code == 422 and "not a registration package" in garbage.json()["detail"]
    elsewhere = api.http.post(
        "/api/v1/projects/shop/domains/dev/registrations",
        content=api.package().to_bytes(),
        headers=headers,
    )
    assert elsewhere.status_code == 422 and "shop/prod" in elsewhere.json()["detail"]
    versions = admin.entities("shop", "prod", kind="launch_plan")
    assert [(e.name, e.version) for e in versions] == [("tick", "v1")]
    plan = admin.launch_plan("shop", "prod", "tick")
    assert plan.schedule == "every 0:00:01" and plan.workflow == "srvflows.price"


def test_admins_manage_the_tokens_of_their_projects(api: Api, admin: Client) -> None:
    made = admin.create_token(["shop"], "viewer", "dashboard")
    assert made.token.startswith("tf_") and made.info.role == "viewer"
    assert api.client(made.token).whoami().name == "dashboard"
    api.token(["bank"], "admin", "bank-admin")
    assert {t.name for t in admin.tokens()} == {"shop-admin", "dashboard"}
    assert _status(lambda: admin.create_token(["*"], "viewer")) == 403
    assert admin.revoke_token(made.info.id).revoked_at is not None
    assert _status(lambda: api.client(made.token).whoami()) == 401
    bank = next(t for t in api.plane.tokens.list() if t.name == "bank-admin")
    assert _status(lambda: admin.revoke_token(bank.id)) == 404


def test_a_list_shows_each_execution_as_its_own_record_would(api: Api, admin: Client) -> None:
    """The list reads only the columns it shows: each entry, byte for byte, is what the
    execution's whole record makes (an error, an owner, a launch plan and its slot too)."""
    from pydantic import TypeAdapter

    from taskfabric.server import _models as m
    from taskfabric.server import _views as views

    admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 1}, name="queued")
    admin.launch("shop", "prod", launch_plan="tick", name="planned")
    admin.cancel(
        admin.launch(
            "shop", "prod", workflow="srvflows.price", inputs={"x": 2}, name="c"
        ).execution.id,
        "not today",
    )
    running = admin.launch("shop", "prod", workflow="srvflows.price", inputs={"x": 3}).execution
    store = api.plane.metadata
    store.update_execution(
        running.id, phase="RUNNING", owner="host:1", started_at=5.5, heartbeat_at=6.25
    )
    response = api.http.get(
        "/api/v1/executions",
        params={"project": "shop"},
        headers={"Authorization": f"Bearer {api.token(['shop'], 'viewer')}"},
    )
    assert response.status_code == 200
    listed = response.json()
    assert len(listed) == 4 and {e["phase"] for e in listed} == {"QUEUED", "ABORTED", "RUNNING"}
    records = [store.get_execution(e["id"]) for e in listed]
    whole = [views.execution(r) for r in records if r is not None]
    assert response.content == TypeAdapter(list[m.Execution]).dump_json(whole)
    by_name = {e["name"]: e for e in listed}
    assert "not today" in by_name["c"]["error"]["message"]
    assert by_name["planned"]["launch_plan"].startswith("tick:")
    assert listed[0]["owner"] == "host:1" and listed[0]["heartbeat_at"] == 6.25
