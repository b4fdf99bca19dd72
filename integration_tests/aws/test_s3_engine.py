"""The engine on an S3 data root (moto): typed data, caching and task logs live in S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aws_tasks
import pytest
from conftest import client

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugin_api import STORAGE_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric_aws import S3BlobStore


def write_config(folder: Path, s3_root: str, endpoint: str, backend: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taskfabric.toml"
    path.write_text(
        f'[storage]\ndata_root = "{s3_root}"\noptions = {{ endpoint_url = "{endpoint}" }}\n\n'
        f'[metadata]\nurl = "sqlite:///{folder / "meta.db"}"\n\n'
        f'[task_types]\npython = "{backend}"\n',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def plugins() -> Iterator[Plugins]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(STORAGE_GROUP, "s3", S3BlobStore)
    with use_plugins(plugins):
        yield plugins


def test_typed_data_caching_and_logs_live_in_s3(
    tmp_path: Path,
    s3_root: str,
    moto_endpoint: str,
    plugins: Plugins,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # (Attempts in other processes, which find the store by their URIs' scheme and the
    # endpoint in boto3's variable, are the Batch jobs of test_batch_jobs.py.)
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    config_path = write_config(tmp_path / "home", s3_root, moto_endpoint, "local")
    with Engine(load_config(config_path), plugins=plugins) as engine:
        assert isinstance(engine.store, S3BlobStore)
        first = engine.launch(aws_tasks.typed_pipeline, {"n": 6})
        assert first.phase == "SUCCEEDED", first.error
        numbers, parts, total = first.python_outputs(
            aws_tasks.typed_pipeline, engine.store, tmp_path / "read"
        )
        assert total == sum(i * i for i in range(6))
        assert numbers.uri.startswith(s3_root + "/")
        assert numbers.read_text().splitlines() == [str(i) for i in range(6)]
        assert sorted(p.name for p in parts) == [f"part-{i}.txt" for i in range(6)]
        again = engine.launch(aws_tasks.typed_pipeline, {"n": 6})
        assert again.phase == "SUCCEEDED", again.error
        statuses = {n.node_id: n.cache_status for n in engine.metadata.nodes(again.execution_id)}
        assert "hit" in statuses.values()
    # Nothing of the blobs is on the local disk: the data root holds scratch space only.
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    keys = [
        o["Key"]
        for o in client("s3", moto_endpoint)
        .list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
        .get("Contents", [])
    ]
    assert any("/raw/" in k or "numbers.txt" in k for k in keys), keys
    assert any(k.endswith(".log") or "/logs/" in k for k in keys), keys
    assert not (tmp_path / "home" / "blobs").exists()
    # `executions logs` reads the task's log from S3.
    env = {**os.environ, "TASKFABRIC_CONFIG": str(config_path), "COLUMNS": "200"}
    shown = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "executions", "logs", first.execution_id,
         "n0"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert "writing 6 numbers" in shown.stdout + shown.stderr, shown


def _check(config_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKFABRIC_CONFIG": str(config_path), "COLUMNS": "300"}
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "plugins", "check"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_plugins_check_reaches_the_bucket_of_the_data_root(
    tmp_path: Path, s3_root: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    shown = _check(write_config(tmp_path / "good", s3_root, moto_endpoint, "local"))
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert (
        f"ok   storage {s3_root} (driver s3): bucket s3://{bucket} at {moto_endpoint}: "
        f"{s3_root} is writable"
    ) in shown.stdout, shown.stdout
    # The probe blob is gone.
    listed = client("s3", moto_endpoint).list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    assert listed.get("KeyCount", 0) == 0, listed.get("Contents")
    # A bucket that does not exist: said so, with the fix.
    shown = _check(
        write_config(tmp_path / "missing", "s3://tf-no-such-bucket/x", moto_endpoint, "local")
    )
    assert shown.returncode == 1
    assert (
        "FAIL storage s3://tf-no-such-bucket/x (driver s3): the bucket of [storage] data_root, "
        f"s3://tf-no-such-bucket, does not exist at {moto_endpoint}: create it"
    ) in shown.stdout, shown.stdout


LEAK_FLOWS = """
from pathlib import Path

from taskfabric import File, task, workflow


@task(cache=True)
def make(n: int) -> File:
    print(f"making {n} lines", flush=True)
    out = File.new("lines.txt")
    out.path.write_text("".join(f"{i}\\n" for i in range(n)))
    return out


@task
def count(f: File) -> int:
    return len(Path(f.path).read_text().splitlines())


@workflow
def wf(n: int = 3) -> int:
    return count(f=make(n=n))
"""


def test_credentials_are_never_written_to_the_database_the_logs_or_the_store(
    tmp_path: Path,
    taskfabric_home: Path,
    s3_root: str,
    moto_endpoint: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run at log level debug: the credentials boto3 used appear in neither its output nor
    any local file (the SQLite database, the scratch space) nor any object of the bucket."""
    key_id, secret = "AKIATFNEVERWRITTEN17", "tf-never-written-secret-0123456789abcdef"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.delenv("TASKFABRIC_DATA_ROOT")
    config_path = write_config(tmp_path / "home", s3_root, moto_endpoint, "local")
    (tmp_path / "leakflows.py").write_text(LEAK_FLOWS, encoding="utf-8")
    env = {**os.environ, "TASKFABRIC_CONFIG": str(config_path), "COLUMNS": "200"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "taskfabric.cli", "--log-level", "debug", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    ran = cli("run", "leakflows.py:wf", "--n", "3", "-o", "json")
    assert json.loads(ran.stdout)["outputs"] == {"o0": 3}, ran.stdout
    # (What `executions show` and `executions logs` print comes from the database and the
    # bucket, both read below.)
    printed = ran.stdout + ran.stderr
    assert "making 3 lines" in printed and "debug" in printed, printed
    files = [p for p in (*taskfabric_home.rglob("*"), *tmp_path.rglob("*")) if p.is_file()]
    assert any(p.name == "meta.db" for p in files), files
    s3 = client("s3", moto_endpoint)
    bucket, prefix = s3_root[len("s3://") :].split("/", 1)
    objects = [
        s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for o in page.get("Contents", [])
    ]
    assert len(objects) > 5, len(objects)
    for word in (key_id, secret):
        assert word not in printed
        assert [p for p in files if word.encode() in p.read_bytes()] == []
        assert [o for o in objects if word.encode() in o] == []
