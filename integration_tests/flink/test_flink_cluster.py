"""The flink-cluster backend against a real standalone session cluster on 127.0.0.1."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import flink_jobs
import flink_orders
import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric_flink import job_name
from taskfabric_flink._backends import FlinkClusterBackend
from taskfabric_flink.cluster import SessionCluster


def _jobs_of(cluster: SessionCluster, execution_id: str) -> list[dict[str, Any]]:
    return [j for j in cluster.rest.jobs() if f"-{execution_id}/" in str(j.get("name"))]


def _failures(cluster: SessionCluster, jobs: list[dict[str, Any]]) -> str:
    """The jobs, and the root exception of each that did not finish (the cluster's own
    account, kept in the test's report: the cluster's folder goes with the test)."""
    lines = [f"{j['name']} {j['jid']}: {j['state']}" for j in jobs]
    for j in jobs:
        if j["state"] != "FINISHED":
            try:
                found = cluster.rest.exceptions(j["jid"])
                text = str(found.get("root-exception") or found)
            except Exception as exc:  # the report must not hide the assertion
                text = f"(its exceptions could not be read: {exc})"
            lines.append(f"{j['name']}: {text[:4000]}")
    return "\n".join(lines)


def _wait_for_running_job(
    cluster: SessionCluster, runs: Path, timeout: float = 240
) -> dict[str, Any]:
    """The one job that runs once the gated task's body has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if runs.exists():
            running = [j for j in cluster.rest.jobs() if j.get("state") == "RUNNING"]
            if running:
                assert len(running) == 1, running
                return running[0]
        time.sleep(0.3)
    pytest.fail(f"no job started on the cluster (task ran: {runs.exists()})")


def test_a_dataframe_workflow_runs_as_jobs_named_after_their_attempts(
    cluster_engine: Engine, flink_cluster: SessionCluster
) -> None:
    result = cluster_engine.launch(flink_orders.orders_report, {"n": 9})
    assert result.phase == "SUCCEEDED", result.error
    assert (
        result.python_outputs(flink_orders.orders_report, cluster_engine.store) == "north:18.75:3"
    )
    (attempt,) = [
        a for a in cluster_engine.metadata.attempts(result.execution_id) if a.node_id == "n1"
    ]
    attempt_id = f"{attempt.execution_id}/{attempt.node_id}/{attempt.attempt}"
    jobs = flink_cluster.rest.jobs_named(job_name(attempt_id))
    assert [j["state"] for j in jobs] == ["FINISHED"], jobs
    links = {link["name"]: link["uri"] for link in attempt.log_links}
    assert links["flink-job"] == f"{flink_cluster.rest_url}/#/job/completed/{jobs[0]['jid']}"
    client_log = Path(links["flink-client"].removeprefix("file://")).read_text()
    assert f"Job has been submitted with JobID {jobs[0]['jid']}" in client_log


def test_a_failing_udf_reports_the_python_error_and_links_the_exception_history(
    cluster_engine: Engine, flink_cluster: SessionCluster
) -> None:
    result = cluster_engine.launch(flink_jobs.failing_udf, {"n": 3})
    assert result.phase == "FAILED"
    assert result.error is not None
    error = result.error
    assert error["code"] == "ZeroDivisionError", error
    message = str(error["message"])
    assert message.startswith("a Python UDF worker raised ZeroDivisionError: division by zero")
    assert "flink_jobs.py" in message and "return x / (x - x)" in message, message
    assert "apache_beam" not in message and "org.apache.flink" not in message, message
    (attempt,) = cluster_engine.metadata.attempts(result.execution_id)
    links = {link["name"]: link["uri"] for link in attempt.log_links}
    history = json.loads(
        __import__("urllib.request").request.urlopen(links["flink-exceptions"], timeout=10).read()
    )
    assert "ZeroDivisionError" in json.dumps(history)


def test_pyflinks_own_example_programs_run_unchanged_as_tasks(
    cluster_engine: Engine, flink_cluster: SessionCluster, tmp_path: Path
) -> None:
    folders = {"datastream_out": str(tmp_path / "ds"), "table_out": str(tmp_path / "table")}
    result = cluster_engine.launch(flink_jobs.examples, folders)
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(flink_jobs.examples, cluster_engine.store) == (True, True)
    jobs = _jobs_of(flink_cluster, result.execution_id)
    assert sorted(j["state"] for j in jobs) == ["FINISHED", "FINISHED"], jobs


def test_cancel_leaves_no_job_running(
    cluster_engine: Engine, flink_cluster: SessionCluster, tmp_path: Path
) -> None:
    runs, go = tmp_path / "runs.txt", tmp_path / "go"
    outcome: dict[str, object] = {}

    def launch() -> None:
        outcome["result"] = cluster_engine.launch(
            flink_jobs.gated,
            {"runs": str(runs), "go": str(go)},
            on_start=lambda execution_id: outcome.setdefault("id", execution_id),
        )

    thread = threading.Thread(target=launch)
    thread.start()
    job = _wait_for_running_job(flink_cluster, runs)
    # While its client runs, the attempt's state is the JobManager's: a status read names
    # the job and its state, and the engine records a link to the job's page.
    (backend,) = [
        b for b in cluster_engine.backends.instances() if isinstance(b, FlinkClusterBackend)
    ]
    execution_id = str(outcome["id"])
    page = f"{flink_cluster.rest_url}/#/job/running/{job['jid']}"

    def recorded_links() -> list[str]:
        return [
            link["uri"]
            for a in cluster_engine.metadata.attempts(execution_id)
            for link in a.log_links
        ]

    deadline = time.monotonic() + 60
    while True:
        status = backend.poll(f"{execution_id}/n0/1")
        if status.message.endswith(f"{job['jid']} RUNNING") and page in recorded_links():
            break
        assert time.monotonic() < deadline, (status, recorded_links())
        time.sleep(0.3)
    assert status.phase.value == "RUNNING" and page in [link.uri for link in status.log_links]
    cluster_engine.request_cancel(execution_id)
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert getattr(outcome["result"], "phase", None) == "ABORTED", outcome
    assert not flink_cluster.wait_for_no_jobs(timeout=60)
    assert flink_cluster.rest.job(job["jid"])["state"] == "CANCELED"
    assert page in recorded_links()  # the aborted attempt leads to the job it cancelled


def test_kill_9_of_the_engine_then_resume_re_attaches_and_starts_no_second_job(
    flink_cluster: SessionCluster, tmp_path: Path, cluster_config_text: str
) -> None:
    from conftest import config_text

    config = tmp_path / "taskfabric.toml"
    config.write_text(config_text(tmp_path / "data", cluster_config_text), encoding="utf-8")
    runs, go = tmp_path / "runs.txt", tmp_path / "go"

    def cli(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "taskfabric.cli", "--config", str(config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip

    workflow = f"{Path(flink_jobs.__file__).resolve()}:gated"
    engine = cli("run", workflow, "--runs", str(runs), "--go", str(go))
    job = _wait_for_running_job(flink_cluster, runs)
    engine.kill()  # SIGKILL: the engine records nothing more
    engine.communicate()
    listed = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "executions", "list",
         "--phase", "RUNNING", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    (execution_id,) = [row["id"] for row in json.loads(listed.stdout)]
    resumed = cli("--log-level", "info", "executions", "resume", execution_id)
    assert resumed.stderr is not None
    for line in resumed.stderr:
        if "re-attached to the attempt's process" in line:
            break
    else:
        pytest.fail(f"the resumed engine did not re-attach: {resumed.communicate()}")
    go.touch()
    out, err = resumed.communicate(timeout=240)
    assert resumed.returncode == 0, err
    assert "o0 = 7" in out, out
    assert runs.read_text().splitlines() == ["run"]  # the task's body ran once
    jobs = _jobs_of(flink_cluster, execution_id)
    assert [(j["jid"], j["state"]) for j in jobs] == [(job["jid"], "FINISHED")], jobs


def _kill_clients(execution_id: str) -> int:
    """SIGKILL the process group of every Flink client of the execution (its gateway JVM
    included), as if their machine were lost; how many."""
    killed = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"taskfabric_flink._driver" in args and any(
            a.startswith(f"{execution_id}/".encode()) for a in args
        ):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(int(proc.name)), signal.SIGKILL)
                killed += 1
    return killed


def test_kill_9_of_the_engine_and_the_clients_then_resume_adopts_the_jobs(
    flink_cluster: SessionCluster, tmp_path: Path, cluster_config_text: str, plugins: Plugins
) -> None:
    from conftest import config_text

    config = tmp_path / "taskfabric.toml"
    config.write_text(config_text(tmp_path / "data", cluster_config_text), encoding="utf-8")
    runs, go, out = tmp_path / "runs.txt", tmp_path / "go", tmp_path / "out"
    workflow = f"{Path(flink_jobs.__file__).resolve()}:gated_pair"
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(config)]
    engine = subprocess.Popen(
        [*base, "run", workflow, "--runs", str(runs), "--go", str(go), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while True:
        running = [j for j in flink_cluster.rest.jobs() if j.get("state") == "RUNNING"]
        lines = runs.read_text().splitlines() if runs.exists() else []
        if len(running) == 2 and len(lines) == 2:
            break
        assert time.monotonic() < deadline, (running, lines)
        time.sleep(0.3)
    engine.kill()  # SIGKILL: the engine records nothing more
    engine.wait()
    listed = subprocess.run(
        [*base, "executions", "list", "--phase", "RUNNING", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    (execution_id,) = [row["id"] for row in json.loads(listed.stdout)]
    assert _kill_clients(execution_id) == 2
    before = {j["jid"] for j in _jobs_of(flink_cluster, execution_id)}
    assert len(before) == 2

    resumed = subprocess.Popen(
        [*base, "--log-level", "info", "executions", "resume", execution_id],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert resumed.stderr is not None
    adopted = 0
    for line in resumed.stderr:
        adopted += "adopted the jobs of an attempt" in line
        if adopted == 2:
            break
    else:
        pytest.fail(f"the resumed engine did not adopt both jobs: {resumed.communicate()}")
    go.touch()
    resumed.communicate(timeout=240)
    assert resumed.returncode != 0  # gated_job's value was lost with its client

    # The task bodies ran once, and the cluster ran the same two jobs, no other.
    assert sorted(runs.read_text().splitlines()) == ["run", "sink"]
    jobs = _jobs_of(flink_cluster, execution_id)
    assert {j["jid"] for j in jobs} == before
    assert [j["state"] for j in jobs] == ["FINISHED", "FINISHED"], _failures(flink_cluster, jobs)
    # The adopted sink job's files hold its row once.
    assert _numbers(out) == [7]
    engine_in_process = Engine(load_config(config), plugins=plugins)
    try:
        nodes = {n.node_id: n for n in engine_in_process.metadata.nodes(execution_id)}
        sink_node, value_node = nodes["n0"], nodes["n1"]
        assert sink_node.phase == "SUCCEEDED", sink_node
        assert value_node.phase == "FAILED", value_node
        attempts = engine_in_process.metadata.attempts(execution_id)
        assert sorted((a.node_id, a.attempt) for a in attempts) == [("n0", 1), ("n1", 1)]
        (value_attempt,) = [a for a in attempts if a.node_id == "n1"]
        assert value_attempt.error is not None
        assert value_attempt.error["code"] == "FlinkClientLost", value_attempt.error
        assert "FINISHED" in value_attempt.error["message"]
    finally:
        engine_in_process.close()


def test_plugins_check_reaches_the_rest_api(
    flink_cluster: SessionCluster, tmp_path: Path, cluster_config_text: str
) -> None:
    from conftest import config_text

    config = tmp_path / "taskfabric.toml"
    backend = cluster_config_text + (
        'pool = "flink-slots"\npool_refresh_seconds = 5\npool_margin = 1\n\n'
        "[pools.flink-slots]\nslots = 4\n"
    )
    config.write_text(config_text(tmp_path / "data", backend), encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "plugins", "check"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"Flink 2.3.0 at {flink_cluster.rest_url}: 1 task managers" in check.stdout, check.stdout
    sized = "pool 'flink-slots' sized from the cluster: 3 slots now, read every 5s"
    assert sized in " ".join(check.stdout.split()), check.stdout


def _numbers(folder: Path) -> list[int]:
    """The numbers in the sink's committed part files (in-progress ones start with a dot)."""
    out: list[int] = []
    for part in folder.rglob("*"):
        if part.is_file() and not part.name.startswith("."):
            out += [int(word) for word in part.read_text().split()]
    return out


def test_a_streaming_job_stops_with_a_savepoint_and_the_next_run_resumes_from_it(
    cluster_engine: Engine, flink_cluster: SessionCluster, tmp_path: Path
) -> None:
    out = tmp_path / "numbers"
    data_root = tmp_path / "data"

    def run_until_more_than(count: int, stop: Any) -> Any:
        outcome: dict[str, Any] = {}

        def launch() -> None:
            outcome["result"] = cluster_engine.launch(
                flink_jobs.numbers_stream,
                {"out": str(out)},
                on_start=lambda execution_id: outcome.setdefault("id", execution_id),
            )

        thread = threading.Thread(target=launch)
        thread.start()
        deadline = time.monotonic() + 240
        while len(_numbers(out)) <= count:
            assert thread.is_alive(), outcome
            assert time.monotonic() < deadline, "the streaming job committed nothing"
            time.sleep(0.3)
        stop(str(outcome["id"]))
        thread.join(timeout=240)
        assert not thread.is_alive()
        assert not flink_cluster.wait_for_no_jobs(timeout=60)
        return outcome["result"]

    def recorded_savepoint(other_than: str = "") -> str:
        """The task's recorded savepoint once it is not `other_than` (the backend records a
        cancelled attempt's once its job has stopped, on a thread of its own)."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            for state in (data_root / "flink-state").rglob("*.json"):
                savepoint = str(json.loads(state.read_text())["savepoint"])
                if savepoint != other_than:
                    return savepoint
            time.sleep(0.3)
        pytest.fail(f"no savepoint recorded but {other_than!r}")

    # The first run is cancelled: its streaming job stops with a savepoint (through the REST
    # API), recorded as the task's state ...
    cancelled = run_until_more_than(0, cluster_engine.request_cancel)
    assert cancelled.phase == "ABORTED", cancelled.error
    first_savepoint = recorded_savepoint()
    assert Path(first_savepoint.removeprefix("file:")).exists(), first_savepoint
    first = _numbers(out)
    assert sorted(first) == list(range(len(first)))  # every record once, none lost
    (job,) = _jobs_of(flink_cluster, cancelled.execution_id)
    assert job["state"] == "FINISHED", job  # stopped, not cancelled

    # ... the second starts from it and is stopped through the command line (the API's
    # request_stop), returning its own savepoint.
    def stop_with_the_cli(execution_id: str) -> None:
        config = str(tmp_path / "taskfabric.toml")
        stopped = subprocess.run(
            [sys.executable, "-m", "taskfabric.cli", "--config", config, "flink", "stop",
             execution_id],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stop requested for execution {execution_id}" in stopped.stdout

    stopped = run_until_more_than(len(first), stop_with_the_cli)
    assert stopped.phase == "SUCCEEDED", stopped.error
    second_savepoint = stopped.python_outputs(flink_jobs.numbers_stream, cluster_engine.store)
    assert isinstance(second_savepoint, str) and second_savepoint, second_savepoint
    assert recorded_savepoint(other_than=first_savepoint) == second_savepoint
    both = _numbers(out)
    assert len(both) > len(first)
    # Resumed from the savepoint: the sequence goes on where it stopped, with no number
    # written twice (a run from scratch would repeat 0, 1, 2, ...) and none skipped.
    assert sorted(both) == list(range(len(both)))


def test_a_pool_sized_from_the_cluster_never_lets_more_jobs_run_than_it_has_slots(
    flink_cluster: SessionCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    plugins: Plugins,
    cluster_config_text: str,
) -> None:
    """Three one-slot tasks on a 4-slot cluster whose pool leaves 2 slots free: two jobs run,
    the third task waits in the pool's queue until one of them ends."""
    from conftest import _engine

    backend = cluster_config_text + (
        'pool = "flink-slots"\npool_refresh_seconds = 0.5\npool_margin = 2\n\n'
        "[pools.flink-slots]\nslots = 4\n\n[engine]\nparallelism = 4\n"
    )
    engine = next(_engine(tmp_path, monkeypatch, plugins, backend))
    runs, go = tmp_path / "runs.txt", tmp_path / "go"
    outcome: dict[str, Any] = {}
    seen: list[int] = []  # the execution's jobs not ended, at each look at the cluster

    def launch() -> None:
        outcome["result"] = engine.launch(
            flink_jobs.three_gated,
            {"runs": str(runs), "go": str(go)},
            on_start=lambda execution_id: outcome.setdefault("id", execution_id),
        )

    def live_jobs() -> list[dict[str, Any]]:
        jobs = _jobs_of(flink_cluster, str(outcome["id"])) if "id" in outcome else []
        live = [j for j in jobs if j.get("state") not in ("FINISHED", "FAILED", "CANCELED")]
        seen.append(len(live))
        return live

    thread = threading.Thread(target=launch)
    try:
        thread.start()
        deadline = time.monotonic() + 240
        while len([j for j in live_jobs() if j.get("state") == "RUNNING"]) < 2:
            assert thread.is_alive(), outcome
            assert time.monotonic() < deadline, "two jobs did not start"
            time.sleep(0.3)
        # Two jobs hold the pool's two slots and cannot end before `go`: the third task
        # waits in the queue, with no lease, no client and no job.
        (pool,) = engine.pool_manager.status(["flink-slots"])
        assert (pool.capacity, pool.in_use, len(pool.waiters)) == (2, 2, 1), pool
        assert len(runs.read_text().splitlines()) == 2
        overview = flink_cluster.rest.overview()
        assert overview["slots-total"] == 4 and overview["slots-available"] >= 2, overview
        go.touch()
        while thread.is_alive():
            live_jobs()
            thread.join(timeout=0.3)
            assert time.monotonic() < deadline + 240, "the workflow did not end"
        result = outcome["result"]
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(flink_jobs.three_gated, engine.store) == 6
    finally:
        go.touch()
        thread.join(timeout=240)
        engine.close()
    assert sorted(runs.read_text().splitlines()) == ["1", "2", "3"]
    jobs = _jobs_of(flink_cluster, result.execution_id)
    assert [j["state"] for j in jobs] == ["FINISHED"] * 3, jobs
    assert max(seen) == 2, seen  # never more jobs at once than the pool's capacity
