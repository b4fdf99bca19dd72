"""Files, directories and dataframes as launch inputs through the API: upload, then launch
with `{"upload": ref}`; uploads are scoped to their project and domain."""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from server_helpers import ServerProcess
from test_api import Api, _status

from taskfabric.cli import cli
from taskfabric.registry import build_package
from taskfabric.server import Client

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

FLOWS = """
from pathlib import Path

import pandas as pd

from taskfabric import Directory, File, task, workflow


@task
def count_lines(f: File) -> int:
    return len(Path(f.path).read_text().splitlines())


@task
def listing(d: Directory) -> list[str]:
    root = Path(d.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@task
def total(df: pd.DataFrame) -> float:
    return float(df["amount"].sum())


@workflow
def lines(f: File) -> int:
    return count_lines(f=f)


@workflow
def tree(d: Directory) -> list[str]:
    return listing(d=d)


@workflow
def revenue(df: pd.DataFrame) -> float:
    return total(df=df)
"""


def _module() -> str:
    """A module name of its own per test: a process cannot load one module from two bundles."""
    return f"upflows_{uuid.uuid4().hex[:8]}"


def _register(api: UploadApi, client: Client, project: str = "shop") -> None:
    src = api.tmp / f"upflows-{project}"
    src.mkdir(exist_ok=True)
    (src / f"{api.module}.py").write_text(textwrap.dedent(FLOWS))
    client.register(build_package(src, project=project, domain="prod", version="v1"))


def _run(api: UploadApi, client: Client, execution_id: str) -> dict[str, Any]:
    api.plane.engine.resume(execution_id)
    detail = client.execution(execution_id, values=True)
    assert detail.execution.phase == "SUCCEEDED", detail.execution.error
    return detail.outputs


class UploadApi(Api):
    def __init__(self, tmp: Path, database: str | None) -> None:
        super().__init__(tmp, database=database)
        self.module = _module()


@pytest.fixture
def api(tmp_path: Path, database: str | None) -> Iterator[UploadApi]:
    found = UploadApi(tmp_path, database=database)
    yield found
    found.plane.close()


@pytest.fixture
def shop(api: UploadApi) -> Client:
    c = api.client(api.token(["shop"], "admin", "shop-admin"))
    _register(api, c)
    return c


def test_file_directory_and_dataframe_inputs_are_uploaded_then_launched(
    api: UploadApi, shop: Client, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("a\nb\nc\n")
    up = shop.upload("shop", "prod", notes)
    assert up.kind == "file" and up.size == 6 and up.ref.startswith("file/")
    assert shop.upload("shop", "prod", notes).ref == up.ref  # content-addressed
    launched = shop.launch(
        "shop", "prod", workflow=f"{api.module}.lines", inputs={"f": {"upload": up.ref}}
    )
    assert _run(api, shop, launched.execution.id) == {"o0": 3}

    folder = tmp_path / "reports"
    (folder / "2026").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n")
    (folder / "2026" / "b.csv").write_text("y\n")
    up_dir = shop.upload("shop", "prod", folder)
    assert up_dir.kind == "directory" and up_dir.name == "reports"
    launched = shop.launch(
        "shop", "prod", workflow=f"{api.module}.tree", inputs={"d": {"upload": up_dir.ref}}
    )
    assert _run(api, shop, launched.execution.id) == {"o0": ["2026/b.csv", "a.csv"]}

    sales = tmp_path / "sales.csv"
    sales.write_text("region,amount\nnorth,2.5\nsouth,4.0\n")
    up_df = shop.upload("shop", "prod", sales)
    launched = shop.launch(
        "shop",
        "prod",
        workflow=f"{api.module}.revenue",
        inputs={"df": {"upload": up_df.ref}},
        name="r1",
    )
    assert _run(api, shop, launched.execution.id) == {"o0": 6.5}
    # an idempotent launch with an uploaded input stays idempotent
    again = shop.launch(
        "shop",
        "prod",
        workflow=f"{api.module}.revenue",
        inputs={"df": {"upload": up_df.ref}},
        name="r1",
    )
    assert not again.created and again.execution.id == launched.execution.id


def test_uploads_belong_to_their_project(api: UploadApi, shop: Client, tmp_path: Path) -> None:
    other = api.client(api.token(["books"], "admin", "books-admin"))
    _register(api, other, "books")
    secret = tmp_path / "secret.txt"
    secret.write_text("shop data\n")
    ref = shop.upload("shop", "prod", secret).ref
    # the other project's token cannot upload into shop, and cannot use shop's upload
    assert _status(lambda: other.upload("shop", "prod", secret)) == 404
    response = api.http.post(
        "/api/v1/projects/books/domains/prod/executions",
        json={"workflow": f"{api.module}.lines", "inputs": {"f": {"upload": ref}}},
        headers={"Authorization": other._http.headers["Authorization"]},
    )
    assert response.status_code == 422
    assert response.json()["input"] == "f"
    assert "no upload" in response.json()["detail"] and "books/prod" in response.json()["detail"]
    # nor can a viewer upload
    viewer = api.client(api.token(["shop"], "viewer"))
    assert _status(lambda: viewer.upload("shop", "prod", secret)) == 403


def test_bad_uploads_and_refs_are_refused_with_what_to_do(
    api: UploadApi, shop: Client, tmp_path: Path
) -> None:
    headers = {"Authorization": shop._http.headers["Authorization"]}
    url = "/api/v1/projects/shop/domains/prod/uploads"

    def post(params: dict[str, str], body: bytes) -> Any:
        return api.http.post(url, params=params, content=body, headers=headers)

    bad_name = post({"name": "../etc/passwd"}, b"x")
    assert bad_name.status_code == 422 and "letters, digits" in bad_name.json()["detail"]
    not_tar = post({"name": "d", "kind": "directory"}, b"not a tar")
    assert not_tar.status_code == 422 and "not a tar archive" in not_tar.json()["detail"]
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        info = tarfile.TarInfo("../../escape.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"x"))
    unsafe = post({"name": "d", "kind": "directory"}, evil.getvalue())
    assert unsafe.status_code == 422 and "unsafe archive member" in unsafe.json()["detail"]

    def launch_problem(inputs: dict[str, Any]) -> str:
        response = api.http.post(
            "/api/v1/projects/shop/domains/prod/executions",
            json={"workflow": f"{api.module}.lines", "inputs": inputs},
            headers=headers,
        )
        assert response.status_code == 422, response.text
        detail: str = response.json()["detail"]
        return detail

    assert 'expected {"upload": REF}' in launch_problem({"f": "/etc/passwd"})
    assert "not one the server gave" in launch_problem({"f": {"upload": "file/../../x"}})
    missing = "file/" + "0" * 64 + "/x.txt"
    assert "no upload" in launch_problem({"f": {"upload": missing}})
    folder = tmp_path / "folder"
    folder.mkdir()
    dir_ref = shop.upload("shop", "prod", folder).ref
    assert "is a directory, the input a file" in launch_problem({"f": {"upload": dir_ref}})


def test_launch_from_the_command_line_uploads_local_paths(tmp_path: Path) -> None:
    """`taskfabric launch --input f=PATH` against a real server: the file is uploaded."""
    local = tmp_path / "local.toml"
    local.write_text(
        '[project]\nname = "shop"\ndomain = "prod"\n\n[server]\nsingle_tenant = true\n'
    )

    def invoke(config: Path, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli, ["--config", str(config), *args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    code, token, _ = invoke(local, "tokens", "create", "--project", "shop", "--role", "admin")
    assert code == 0
    (tmp_path / "token").write_text(token)
    server = ServerProcess(local, tmp_path / "server.log", workers=1, env={}).start()
    try:
        remote = tmp_path / "remote.toml"
        remote.write_text(
            f'[project]\nname = "shop"\ndomain = "prod"\n\n[server]\nurl = "{server.url}"\n'
            'token_file = "token"\n'
        )
        module = _module()
        src = tmp_path / "src"
        src.mkdir()
        (src / f"{module}.py").write_text(textwrap.dedent(FLOWS))
        assert invoke(remote, "register", str(src), "--version", "v1")[0] == 0
        data = tmp_path / "five.txt"
        data.write_text("1\n2\n3\n4\n5\n")
        code, out, err = invoke(
            remote, "launch", f"{module}.lines", "--input", f"f={data}", "--wait", "-o", "json"
        )
        assert code == 0, err + server.tail()
        assert "uploaded f = " in err
        assert json.loads(out)["outputs"] == {"o0": 5}
        code, _, err = invoke(
            remote, "launch", f"{module}.lines", "--input", f"f={tmp_path / 'nope.txt'}"
        )
        assert code != 0 and "input 'f': no such file or directory" in err
    finally:
        server.stop()
