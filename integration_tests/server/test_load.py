"""1,000 launches through the API of two multi-tenant servers on one PostgreSQL database (issue
21): none is lost, none runs twice.

Each server has one long-lived engine process running up to 8 executions at once, every task
in a sandbox started by the fork server. The launches come from 8 client threads, spread over
both servers, and 100 of them are sent twice (a client retrying): the second answers with the
same execution. The task creates a file named after its input with `O_EXCL` in a folder
every sandbox may write: a second run of any execution would fail on it, and the folder ends
with exactly one file per launch. Counts are checked, never timings: a busy machine only
makes it slower (it waits at most `DEADLINE` seconds for all to end, or `STALLED` seconds
with none ending, then says how many did). Right after the launches the database must hold
exactly the launched executions: one lost or made twice at launch fails there, at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from taskfabric.config import load_config
from taskfabric.metadata import MetadataStore
from taskfabric.registry import build_package
from taskfabric.server import Client, TokenStore

LAUNCHES = 1000
RETRIED = 100
THREADS = 8
DEADLINE = 1800.0
#: A lost execution (never run) would hold the wait to DEADLINE: none ending for this long ends it.
STALLED = 300.0

FLOWS = """
import os

from taskfabric import task, workflow

RUNS = {runs!r}


@task
def once(x: int) -> int:
    # O_EXCL: a second run of the same launch fails here.
    os.close(os.open(os.path.join(RUNS, str(x)), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    return x + 1


@workflow
def load(x: int) -> int:
    return once(x=x)
"""


@pytest.fixture
def postgres_schema_url() -> Iterator[str]:
    url = os.environ.get("TASKFABRIC_TEST_POSTGRES_URL", "")
    if not url:
        pytest.skip("needs PostgreSQL: set TASKFABRIC_TEST_POSTGRES_URL (bash .ci/run sets one)")
    schema = f"tf_load_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    options = f"-csearch_path={schema} -csynchronous_commit=off"
    yield (
        sa.make_url(url)
        .update_query_dict({"options": options})
        .render_as_string(hide_password=False)
    )
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.url = f"http://127.0.0.1:{_free_port()}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        port = self.url.rsplit(":", 1)[1]
        cmd = [sys.executable, "-m", "taskfabric.cli", "--config", str(self.config)]
        cmd += ["--log-level", "warning", "server", "--port", port, "--workers", "1"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited: {self.tail()}"
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server did not answer in 120 s: {self.tail()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-40:])
        except OSError:
            return ""


def test_a_thousand_launches_none_lost_none_run_twice(
    tmp_path: Path, postgres_schema_url: str
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    runs.chmod(0o777)  # the sandboxed tasks write there (as user 65534 under root)
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n'
        f'[metadata]\nurl = "{postgres_schema_url}"\n\n'
        "[server]\nscheduler = false\nexecutions_per_worker = 8\n\n"
        '[task_types]\npython = "box"\n\n'
        f'[backends.box]\ndriver = "sandbox"\nread_write = ["{runs}"]\n'
    )
    store = MetadataStore(load_config(config).metadata_url)
    token = TokenStore(store).create(projects=["load"], role="admin", name="load")[1]
    src = tmp_path / "src"
    src.mkdir()
    (src / "loadflows.py").write_text(textwrap.dedent(FLOWS.format(runs=str(runs))))
    servers = [Server(config, tmp_path / f"server{i}.log") for i in range(2)]
    try:
        for server in servers:
            server.start()
        clients = [Client(s.url, token, timeout=120) for s in servers]
        clients[0].register(build_package(src, project="load", domain="prod", version="v1"))

        def launch(x: int, server: int | None = None) -> tuple[int, str, bool]:
            client = clients[x % 2 if server is None else server]
            found = client.launch(
                "load", "prod", workflow="loadflows.load", inputs={"x": x}, name=f"l-{x}"
            )
            return x, found.execution.id, found.created

        with ThreadPoolExecutor(THREADS) as pool:
            first = list(pool.map(launch, range(LAUNCHES)))
            # a client that did not hear the answer sends the same launch again (to the
            # other server): the same execution, not a second one
            again = list(pool.map(lambda x: launch(x, (x + 1) % 2)[1:], range(0, 2 * RETRIED, 2)))
        assert all(created for _, _, created in first)
        ids = {x: i for x, i, _ in first}
        assert len(set(ids.values())) == LAUNCHES
        assert again == [(ids[x], False) for x in range(0, 2 * RETRIED, 2)]

        deadline = time.monotonic() + DEADLINE
        with store.engine.connect() as conn:
            made = [r[0] for r in conn.execute(sa.text("SELECT id FROM executions")).all()]
            conn.commit()
            assert sorted(made) == sorted(ids.values()), "an execution lost or made twice"
            progress, moved_at = -1, time.monotonic()
            while True:
                phases: dict[str, int] = dict(
                    conn.execute(
                        sa.text("SELECT phase, COUNT(*) FROM executions GROUP BY phase")
                    ).all()
                )
                conn.commit()
                ended = sum(n for p, n in phases.items() if p not in ("QUEUED", "RUNNING"))
                if ended >= LAUNCHES:
                    break
                if ended != progress:
                    progress, moved_at = ended, time.monotonic()
                now = time.monotonic()
                assert now < deadline and now - moved_at < STALLED, (
                    f"{ended} of {LAUNCHES} ended ({DEADLINE:g} s at most, none for "
                    f"{now - moved_at:.0f} s): {phases}\n" + "\n".join(s.tail() for s in servers)
                )
                time.sleep(1)
            assert phases == {"SUCCEEDED": LAUNCHES}, phases
            attempts: dict[str, int] = dict(
                conn.execute(
                    sa.text(
                        "SELECT execution_id, COUNT(*) FROM node_attempts GROUP BY execution_id"
                    )
                ).all()
            )
        assert set(attempts) == set(ids.values())
        twice = {e: n for e, n in attempts.items() if n != 1}
        assert not twice, f"executions with more than one attempt: {twice}"
        assert sorted(int(p.name) for p in runs.iterdir()) == list(range(LAUNCHES))
        for x in range(0, LAUNCHES, 97):  # a sample of the outputs, through the API
            assert clients[1].execution(ids[x]).outputs == {"o0": x + 1}
    finally:
        for server in servers:
            server.stop()
        store.close()
