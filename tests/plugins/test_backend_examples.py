"""The backends of docs/plugins/writing.md built on the public bases and the re-attach protocol
(docs/plugins/examples/backend_threads.py, backend_remote.py) work: workflows on a real engine,
and the backend conformance suite, re-attach checks included."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskfabric import task, workflow
from taskfabric.config import BackendConfig, Config, StorageConfig
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.testing import BackendConformance

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "examples"
sys.path.insert(0, str(EXAMPLES))

import backend_remote  # noqa: E402
import backend_threads  # noqa: E402

SERVICE = Path(__file__).with_name("jobs_service.py")


# -- the in-process backend: ThreadBackend ---------------------------------------------------


def _insert(value: int) -> int:
    db = backend_threads.connection()
    db.execute("CREATE TABLE IF NOT EXISTS seen (value INTEGER)")
    db.execute("INSERT INTO seen VALUES (?)", (value,))
    return int(db.execute("SELECT count(*) FROM seen").fetchone()[0])


@task
def record(value: int) -> int:
    return _insert(value)


@task
def record_then_fail(value: int) -> int:
    _insert(value)
    raise ValueError(f"{value} is refused after being written")


@workflow
def records(value: int) -> int:
    return record(value=value)


@workflow
def refused(value: int) -> int:
    return record_then_fail(value=value)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    database = tmp_path / "app.db"
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "sqlite", backend_threads.SqliteBackend)
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        task_types={"python": "db"},
        backends={"db": BackendConfig(driver="sqlite", options={"database": str(database)})},
    )
    with use_plugins(plugins), Engine(config, plugins=plugins) as engine:
        yield engine, database


def test_the_thread_backend_commits_what_succeeded_attempts_wrote(
    sqlite_engine: tuple[Engine, Path],
) -> None:
    engine, database = sqlite_engine
    result = engine.launch(records, {"value": 7})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(records, engine.store) == 1
    failed = engine.launch(refused, {"value": 8})
    assert failed.phase == "FAILED"
    assert failed.error is not None and "8 is refused" in failed.error["message"]
    import sqlite3

    with sqlite3.connect(database) as conn:
        assert conn.execute("SELECT value FROM seen").fetchall() == [(7,)]


def test_connection_outside_the_backend_says_where_it_works() -> None:
    with pytest.raises(RuntimeError, match="tasks that the sqlite backend runs"):
        backend_threads.connection()


class TestSqliteBackendConformance(BackendConformance):
    backend = {"driver": "sqlite", "database": "set by the fixture below"}

    def setup_plugins(self, plugins: Plugins) -> None:
        plugins.add_driver(BACKENDS_GROUP, "sqlite", backend_threads.SqliteBackend)

    @pytest.fixture(autouse=True)
    def _database(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        table = {"driver": "sqlite", "database": str(tmp_path / "conformance.db")}
        monkeypatch.setattr(type(self), "backend", table)


# -- the remote backend with re-attach -------------------------------------------------------


@pytest.fixture(scope="module")
def jobs_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The job service, a process of its own that outlives every engine of the tests."""
    port_file = tmp_path_factory.mktemp("jobs") / "port"
    proc = subprocess.Popen([sys.executable, str(SERVICE), str(port_file)])
    deadline = time.monotonic() + 60
    while not port_file.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the job service did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port_file.read_text()}"
    proc.kill()
    proc.wait()


def jobs(url: str) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"{url}/jobs", timeout=30) as response:
        jobs: list[dict[str, Any]] = json.loads(response.read())
        return jobs


class TestRemoteBackendConformance(BackendConformance):
    backend = {"driver": "jobs", "url": "set by the fixture below"}
    can_stop_running_work = True  # DELETE kills the job's process group

    def setup_plugins(self, plugins: Plugins) -> None:
        plugins.add_driver(BACKENDS_GROUP, "jobs", backend_remote.JobsBackend)

    @pytest.fixture(autouse=True)
    def _service(self, jobs_service: str, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(type(self), "backend", {"driver": "jobs", "url": jobs_service})


def test_a_provisional_handle_finds_the_job_an_engine_created_before_it_died(
    jobs_service: str, tmp_path: Path
) -> None:
    # The engine recorded `pending:<name>`, created the job, and died before recording the
    # job's id: the next engine's submit finds that job (409) instead of making a second.
    from taskfabric.testing import DirectAttempts
    from taskfabric.testing._tasks import run_when_told

    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "jobs", backend_remote.JobsBackend)
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        backends={"remote": BackendConfig(driver="jobs", options={"url": jobs_service})},
        task_types={"python": "remote"},
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with use_plugins(plugins), Engine(config, plugins=plugins) as first:
        direct = DirectAttempts(first, task_type="python", deadline=60)
        attempt = direct.make(run_when_told, scratch=str(scratch), name="p")
        first.backends.for_task(attempt.task).submit(attempt)
        pending = direct.handles(attempt)[0]
        assert pending.startswith(backend_remote.PENDING)
        with Engine(config, plugins=plugins) as second:
            again = dataclasses.replace(attempt, handle=pending)
            backend = second.backends.for_task(again.task)
            backend.submit(again)
            (scratch / "p.go").touch()
            status = direct.wait(backend, again)
            assert status.phase.value == "SUCCEEDED", status.error
            assert direct.outputs(again, status) == 1
    named = [job for job in jobs(jobs_service) if job["name"] == attempt.attempt_id]
    assert len(named) == 1, named


def test_abandon_stops_the_job_an_earlier_engine_left_running(
    jobs_service: str, tmp_path: Path
) -> None:
    # An engine started the job and died; the resumed run ended without re-attaching to it:
    # another engine's instance, which never saw the attempt, is handed its handle.
    from taskfabric.testing import DirectAttempts
    from taskfabric.testing._tasks import run_when_told

    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "jobs", backend_remote.JobsBackend)
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        backends={"remote": BackendConfig(driver="jobs", options={"url": jobs_service})},
        task_types={"python": "remote"},
    )
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with use_plugins(plugins), Engine(config, plugins=plugins) as first:
        direct = DirectAttempts(first, task_type="python", deadline=60)
        attempt = direct.make(run_when_told, scratch=str(scratch), name="a")
        first.backends.for_task(attempt.task).submit(attempt)
        job_id = direct.handles(attempt)[-1]
        assert not job_id.startswith(backend_remote.PENDING)
        with Engine(config, plugins=plugins) as second:
            backend = second.backends.named("remote")
            backend.abandon(attempt.attempt_id, backend_remote.PENDING + "x")  # left alone
            assert [j["state"] for j in jobs(jobs_service) if j["id"] == job_id] == ["RUNNING"]
            backend.abandon(attempt.attempt_id, job_id)
        (state,) = [j["state"] for j in jobs(jobs_service) if j["id"] == job_id]
        assert state == "CANCELLED"
