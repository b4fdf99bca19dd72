"""The server on an S3 data root (moto): `taskfabric server` answering the API, with an engine
worker process per execution (`--workers 1`, single-tenant). The registered code bundle, the
uploads, the inputs and outputs and the task logs all live in S3; each attempt runs in a
process of its own (`subprocess`), which finds S3 by its URIs' scheme.

(A multi-tenant server's workers, `taskfabric executions work`, run registered code only on
backends that isolate it; the one built in, `sandbox`, needs the blob store on local files.)"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import client

from taskfabric.registry import build_package
from taskfabric.server import Client

FLOWS = """
from pathlib import Path

import pandas as pd

from taskfabric import Directory, File, task, workflow


@task
def count_lines(f: File) -> int:
    print(f"counting the lines of {f.path.name}", flush=True)
    return len(Path(f.path).read_text().splitlines())


@task
def listing(d: Directory) -> list[str]:
    root = Path(d.path)
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@task
def total(df: pd.DataFrame) -> float:
    return float(df["amount"].sum())


@workflow
def inventory(f: File, d: Directory, df: pd.DataFrame) -> tuple[int, list[str], float]:
    return count_lines(f=f), listing(d=d), total(df=df)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def _cli(config: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def site(
    tmp_path: Path, s3_root: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Client, str]]:
    """A server with one engine worker on a data root in S3; yields an admin client of
    project shop and the folder of the server's log."""
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        textwrap.dedent(f"""\
            [project]
            name = "shop"
            domain = "prod"

            [storage]
            data_root = "{s3_root}"
            options = {{ endpoint_url = "{moto_endpoint}" }}

            [metadata]
            url = "sqlite:///{tmp_path / "meta.db"}"

            [server]
            single_tenant = true

            [task_types]
            python = "procs"

            [backends.procs]
            driver = "subprocess"
            """),
        encoding="utf-8",
    )
    # The attempts' processes find the same S3 through boto3's variable.
    env = {**os.environ, "AWS_ENDPOINT_URL_S3": moto_endpoint, "COLUMNS": "200"}
    made = _cli(config, "tokens", "create", "--project", "shop", "--role", "admin", env=env)
    assert made.returncode == 0, made.stderr
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logs = tmp_path / "logs"
    logs.mkdir()
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(config)]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with (logs / "server.log").open("ab") as out:
            command = [*base, "--log-level", "info", "server", "--port", str(port)]
            procs.append(
                subprocess.Popen(
                    [*command, "--workers", "1"], stdout=out, stderr=subprocess.STDOUT, env=env
                )
            )

        def ready() -> bool:
            for proc in procs:
                if proc.poll() is not None:
                    raise AssertionError(f"a process exited ({proc.returncode}); see {logs}")
            try:
                return httpx.get(url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        _wait_until(ready, 120, f"the server on {url}")
        yield Client(url, made.stdout.strip()), str(logs)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(40)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_uploads_and_executions_through_the_server_and_its_worker_live_in_s3(
    site: tuple[Client, str], tmp_path: Path, s3_root: str, moto_endpoint: str
) -> None:
    shop, logs = site
    src = tmp_path / "src"
    src.mkdir()
    (src / "s3flows.py").write_text(textwrap.dedent(FLOWS))
    shop.register(build_package(src, project="shop", domain="prod", version="v1"))

    def finished(execution_id: str) -> Any:
        def ended() -> Any:
            detail = shop.execution(execution_id, values=True)
            return detail if detail.execution.phase not in ("QUEUED", "RUNNING") else None

        detail = _wait_until(ended, 180, f"execution {execution_id} (logs in {logs})")
        assert detail.execution.phase == "SUCCEEDED", detail.execution.error
        return detail

    notes = tmp_path / "notes.txt"
    notes.write_text("a\nb\nc\n")
    up = shop.upload("shop", "prod", notes)
    assert up.kind == "file" and up.size == 6
    assert shop.upload("shop", "prod", notes).ref == up.ref  # content-addressed
    folder = tmp_path / "reports"
    (folder / "2026").mkdir(parents=True)
    (folder / "a.csv").write_text("x\n")
    (folder / "2026" / "b.csv").write_text("y\n")
    up_dir = shop.upload("shop", "prod", folder)
    assert up_dir.kind == "directory"
    sales = tmp_path / "sales.csv"
    sales.write_text("region,amount\nnorth,2.5\nsouth,4.0\n")
    up_df = shop.upload("shop", "prod", sales)
    launched = shop.launch(
        "shop",
        "prod",
        workflow="s3flows.inventory",
        inputs={"f": {"upload": up.ref}, "d": {"upload": up_dir.ref}, "df": {"upload": up_df.ref}},
    )
    assert finished(launched.execution.id).outputs == {
        "o0": 3,
        "o1": ["2026/b.csv", "a.csv"],
        "o2": 6.5,
    }
    # The task's log, kept in S3, read through the API.
    task_log = shop.task_log(launched.execution.id, "n0")
    assert task_log.phase == "SUCCEEDED"
    assert "counting the lines of notes.txt" in task_log.text
    # Everything is in the bucket, nothing in a local blob folder.
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    keys = [
        o["Key"]
        for page in client("s3", moto_endpoint)
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=prefix + "/")
        for o in page.get("Contents", [])
    ]
    assert any("notes.txt" in k for k in keys), keys
    assert any(k.endswith(".log") for k in keys), keys
    assert any(launched.execution.id in k for k in keys), keys
    # The registered code bundle and the registry's entries too.
    assert any(k.startswith(f"{prefix}/bundles/") and k.endswith(".tar.gz") for k in keys), keys
    assert any(k.startswith(f"{prefix}/registry/") for k in keys), keys
    assert not (tmp_path / "blobs").exists()
