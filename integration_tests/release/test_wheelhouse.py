"""A release as users get it: scripts/build_wheelhouse.py builds every distribution, then a
fresh virtual environment installs a plugin from that folder the way the docs say
(`pip install --find-links WHEELHOUSE taskfabric-http`: the core comes from the folder too,
its dependencies from the package index) and runs a workflow with it against a real HTTP
server. Nothing of this checkout is importable there."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import venv
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "build_wheelhouse.py"
sys.path.insert(0, str(SCRIPT.parent))
import build_wheelhouse  # noqa: E402


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheelhouse")
    before = build_wheelhouse.leftovers()  # an old setuptools install's, in a dev checkout
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # building (pip wheel ./core, as a non-editable install does) left nothing here
    assert build_wheelhouse.leftovers() == before
    return out


@pytest.fixture
def geo_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            place = {"name": self.path.rpartition("=")[2], "lat": 52.5, "lon": 13.4}
            body = json.dumps({"results": [place]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_every_wheel_has_the_one_version_and_a_license(wheelhouse: Path) -> None:
    version = build_wheelhouse.check_tree()
    names = sorted(p.name for p in wheelhouse.glob("*.whl"))
    expected = ["taskfabric"] + [
        "taskfabric_" + p.name
        for p in sorted((REPO / "plugins").glob("*/pyproject.toml"))
        for p in [p.parent]
    ]
    assert names == sorted(f"{n}-{version}-py3-none-any.whl" for n in expected)
    for wheel in wheelhouse.glob("*.whl"):
        build_wheelhouse.check_wheel(wheel, version)  # raises on a missing LICENSE


def test_a_plugin_installs_from_the_wheelhouse_and_runs(
    wheelhouse: Path, geo_server: str, tmp_path: Path
) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, clear=True)
    bin_dir = env_dir / "bin"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    clean["PATH"] = f"{bin_dir}{os.pathsep}{clean.get('PATH', '')}"
    clean["TASKFABRIC_DATA_ROOT"] = str(tmp_path / "data")
    clean["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"

    def run(*cmd: str) -> str:
        done = subprocess.run(
            list(cmd),
            cwd=tmp_path,
            env=clean,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert done.returncode == 0, f"{cmd}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(str(bin_dir / "pip"), "install", "-q", "--find-links", str(wheelhouse), "taskfabric-http")
    where = run(str(bin_dir / "python"), "-c", "import taskfabric, taskfabric_http as h; "
                "print(taskfabric.__file__); print(h.__file__)")  # fmt: skip
    assert str(REPO) not in where and str(env_dir) in where
    (tmp_path / "taskfabric.toml").write_text(
        '[backends.http]\ndriver = "http"\n'
        f'[backends.http.services.geo]\nbase_url = "{geo_server}"\n'
    )
    (tmp_path / "geo_flow.py").write_text(
        textwrap.dedent(
            """
            from dataclasses import dataclass

            from taskfabric import task, workflow
            from taskfabric_http import HttpRequest


            @dataclass
            class Place:
                name: str
                lat: float
                lon: float


            @task(config=HttpRequest(service="geo", url="/geocode",
                                     params={"q": "{inputs.address}"}, outputs="$.results[0]"))
            def geocode(address: str) -> Place: ...


            @workflow
            def locate(address: str) -> Place:
                return geocode(address=address)
            """
        )
    )
    out = run(str(bin_dir / "taskfabric"), "run", "-o", "json", "geo_flow.py:locate",
              "--address", "Oak")  # fmt: skip
    assert json.loads(out)["outputs"] == {"o0": {"name": "Oak", "lat": 52.5, "lon": 13.4}}
    listed = run(str(bin_dir / "taskfabric"), "plugins", "list")
    assert "taskfabric-http" in listed
