"""Tenant code is kept from the control plane (issue 21): a task registered by one project, run
by a multi-tenant server on the `sandbox` backend, finds no config, no password, no token, no
database file and none of another project's data, and still reads its own inputs; the worker
never imports registered code; and a multi-tenant server refuses to run registered code on a
backend that does not isolate it, saying how to fix that."""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from server_helpers import ServerProcess
from test_api import Api

from taskfabric.config import load_config
from taskfabric.engine import CodeNotIsolatedError, Engine
from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package
from taskfabric.server import Client, ControlPlane, ServerError, TokenStore, create_app

pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

# The registered code of project alpha. The strings it looks for are written reversed, so that
# its own source (which its sandbox sees) holds none of them.
SNOOP = """
import json
import os
import sys
from pathlib import Path

from taskfabric import File, task, workflow

CONFIG = {config!r}
DATABASE = {database!r}
BETA_FILE = {beta_file!r}
SECRETS = [s[::-1] for s in {secrets!r}]
WITNESS = {witness!r}
SKIP = ("/proc", "/sys", "/dev", "/usr", sys.prefix, sys.base_prefix)


def snoop(walk: bool = True) -> list[str]:
    found = []
    for key, value in os.environ.items():
        if CONFIG in value or any(s in value for s in SECRETS) or "postgres" in value.lower():
            found.append(f"environment: {{key}}")
    for proc in Path("/proc").iterdir():
        for part in ("cmdline", "environ") if proc.name.isdigit() else ():
            try:
                text = (proc / part).read_bytes().decode(errors="replace")
            except OSError:
                continue
            if CONFIG in text or "--config" in text or any(s in text for s in SECRETS):
                found.append(f"{{proc}}/{{part}} names the config or a secret")
    for path in (CONFIG, DATABASE, BETA_FILE):
        try:
            Path(path).read_bytes()
            found.append(f"read {{path}}")
        except OSError:
            pass
    if not walk:
        return found
    for folder, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if not os.path.join(folder, d).startswith(SKIP)]
        for name in files:
            path = os.path.join(folder, name)
            if name == "taskfabric.toml" or name.endswith((".db", ".db-wal")):
                found.append(f"found {{path}}")
            try:
                if not os.path.isfile(path) or os.path.getsize(path) > 4_000_000:
                    continue
                data = Path(path).read_bytes()
            except OSError:
                continue
            if any(s.encode() in data for s in SECRETS):
                found.append(f"a secret or beta's data in {{path}}")
    return found


# The module's top level runs wherever the module is imported: it leaves a witness where it
# can, so a worker that imported it is caught.
try:
    Path(WITNESS, f"imported-by-{{os.getpid()}}").write_text(json.dumps(snoop(walk=False)))
except OSError:
    pass


@task
def probe(mine: File) -> str:
    return json.dumps({{"found": snoop(), "mine": Path(mine.path).read_text()}})


@workflow
def snooping(mine: File) -> str:
    return probe(mine=mine)
"""

BETA = """
from taskfabric import task, workflow


@task
def hello(x: int) -> int:
    return x + 1


@workflow
def greet(x: int) -> int:
    return hello(x=x)
"""


@pytest.fixture(params=["sqlite", "postgres"])
def database(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    make: Any = request.getfixturevalue("postgres_schema")
    url: str = make("tf_isolation")
    return url


def _multi_tenant_config(path: Path, database: str | None, comment_secret: str) -> None:
    text = f"# the operator's note: {comment_secret}\n\n[server]\nworkers = 1\n\n"
    text += '[task_types]\npython = "box"\n\n[backends.box]\ndriver = "sandbox"\n'
    if database is not None:
        text += f'\n[metadata]\nurl = "{database}"\n'
    path.write_text(text)


def test_a_tenants_task_sees_nothing_of_the_server_or_other_projects(
    tmp_path: Path, database: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = tmp_path / "taskfabric.toml"
    comment_secret = f"hunter2-{uuid.uuid4().hex}"
    _multi_tenant_config(config_path, database, comment_secret)
    config = load_config(config_path)
    metadata = MetadataStore(config.metadata_url)
    tokens = TokenStore(metadata)
    alpha = tokens.create(projects=["alpha"], role="admin", name="alpha")[1]
    beta = tokens.create(projects=["beta"], role="admin", name="beta")[1]
    metadata.close()
    env_token = f"tf_envtoken_{uuid.uuid4().hex}"
    server = ServerProcess(
        config_path, tmp_path / "server.log", workers=1, env={"TASKFABRIC_TOKEN": env_token}
    ).start()
    try:
        beta_client = Client(server.url, beta)
        beta_marker = f"beta-confidential-{uuid.uuid4().hex}"
        beta_data = tmp_path / "beta-upload.txt"
        beta_data.write_text(beta_marker)
        beta_client.upload("beta", "prod", beta_data)
        (beta_path,) = config.data_root.rglob("beta-upload.txt")
        assert beta_path.read_text() == beta_marker

        secrets = [comment_secret, beta_marker, env_token]
        if database is not None:  # the password, as the URL writes it (CI's is a common word)
            url = sa.make_url(database)
            secrets.append(f"{url.username}:{url.password}@{url.host}")
        witness = tmp_path / "witness"
        witness.mkdir()
        module = f"alphaflows_{uuid.uuid4().hex[:8]}"
        src = tmp_path / "alpha-src"
        src.mkdir()
        (src / f"{module}.py").write_text(
            textwrap.dedent(SNOOP).format(
                config=str(config_path),
                database=str(config.data_root / "taskfabric.db"),
                beta_file=str(beta_path),
                secrets=[s[::-1] for s in secrets if s],
                witness=str(witness),
            )
        )
        alpha_client = Client(server.url, alpha)
        alpha_client.register(build_package(src, project="alpha", domain="prod", version="v1"))
        mine = tmp_path / "alpha-input.txt"
        mine.write_text("alpha's own rows")
        up = alpha_client.upload("alpha", "prod", mine)
        launched = alpha_client.launch(
            "alpha", "prod", workflow=f"{module}.snooping", inputs={"mine": {"upload": up.ref}}
        )
        ended = alpha_client.wait(launched.execution.id, timeout=120, poll=0.2)
        detail = alpha_client.execution(launched.execution.id)
        assert ended.phase == "SUCCEEDED", (detail.execution.error, server.tail())
        report = json.loads(detail.outputs["o0"])
    finally:
        server.stop()

    assert report["mine"] == "alpha's own rows"
    assert report["found"] == []
    # No process of the server imported alpha's module: its top level leaves a witness where
    # it can, and only this test's own process (`build_package` imports the code) did.
    assert [p.name for p in witness.iterdir()] == [f"imported-by-{os.getpid()}"]
    # The same probe, run here with the server's view of the machine, finds them: it is able
    # to tell (the walk of this whole machine is left out).
    import importlib.util

    spec = importlib.util.spec_from_file_location(module, src / f"{module}.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    # With the server's environment, which held the token (on PostgreSQL this process's own
    # environment names the database too; the SQLite case must not rely on that).
    monkeypatch.setenv("TASKFABRIC_TOKEN", env_token)
    control = probe.snoop(walk=False)
    assert f"read {config_path}" in control and f"read {beta_path}" in control, control
    assert any(found.startswith("environment") for found in control), control


# -- the refusals -------------------------------------------------------------------------------

FLOWS = """
from taskfabric import task, workflow


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def twice(x: int) -> int:
    return double(x=x)
"""


class MultiTenantApi(Api):
    """The app as `taskfabric server` makes it without `single_tenant`: on an engine that
    isolates code; tasks of type python on the default, in-process `local` backend."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.plane.close()
        self.plane = ControlPlane(self.config, engine=Engine(self.config, isolate_code=True))
        self.app = create_app(self.config, plane=self.plane)


def _register(api: Api, client: Client) -> str:
    module = f"isoflows_{uuid.uuid4().hex[:8]}"
    src = api.tmp / "iso-src"
    src.mkdir(exist_ok=True)
    (src / f"{module}.py").write_text(textwrap.dedent(FLOWS))
    client.register(build_package(src, project="shop", domain="prod", version="v1"))
    return module


@pytest.fixture
def api(tmp_path: Path) -> Iterator[MultiTenantApi]:
    found = MultiTenantApi(tmp_path)
    yield found
    found.plane.close()


def _says_how_to_fix(message: str) -> None:
    assert ".double' (task type python)" in message, message
    assert "backend 'local' (driver local)" in message, message
    assert '[task_types] python = "sandbox"' in message, message
    assert "[server] single_tenant = true" in message, message


def test_a_multi_tenant_server_refuses_to_launch_on_the_local_backend(api: MultiTenantApi) -> None:
    client = api.client(api.token(["shop"], "admin", "shop-admin"))
    module = _register(api, client)
    with pytest.raises(ServerError) as refused:
        client.launch("shop", "prod", workflow=f"{module}.twice", inputs={"x": 2})
    assert refused.value.status == 409  # as any launch the server's config cannot run
    _says_how_to_fix(str(refused.value))


def test_a_multi_tenant_worker_fails_a_queued_execution_it_would_not_isolate(
    tmp_path: Path,
) -> None:
    """Queued while the server was single-tenant (or by another server's config): the worker
    does not run it, and ends it FAILED with the reason instead of leaving it queued."""
    (tmp_path / "trusting").mkdir()
    trusting = Api(tmp_path / "trusting")  # single-tenant: launches on `local`
    try:
        client = trusting.client(trusting.token(["shop"], "admin", "shop-admin"))
        module = _register(trusting, client)
        queued = client.launch("shop", "prod", workflow=f"{module}.twice", inputs={"x": 2})
    finally:
        trusting.plane.close()
    isolated = Engine(trusting.config, isolate_code=True)
    try:
        with pytest.raises(CodeNotIsolatedError) as refused:
            isolated.resume(queued.execution.id)
        _says_how_to_fix(str(refused.value))
        ended = isolated.find_execution(queued.execution.id)
    finally:
        isolated.close()
    assert ended.phase == "FAILED" and ended.owner == ""
    assert ended.error is not None and ended.error["code"] == "CodeNotIsolated"
