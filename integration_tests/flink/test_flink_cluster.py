"""The flink-cluster backend against a real standalone session cluster on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import flink_jobs
import flink_orders
import pytest

from taskfabric.engine import Engine
from taskfabric_flink import job_name, request_stop
from taskfabric_flink.cluster import SessionCluster


def _jobs_of(cluster: SessionCluster, execution_id: str) -> list[dict[str, Any]]:
    return [j for j in cluster.rest.jobs() if f"-{execution_id}/" in str(j.get("name"))]


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
    cluster_engine.request_cancel(str(outcome["id"]))
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert getattr(outcome["result"], "phase", None) == "ABORTED", outcome
    assert not flink_cluster.wait_for_no_jobs(timeout=60)
    assert flink_cluster.rest.job(job["jid"])["state"] == "CANCELED"


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


def test_plugins_check_reaches_the_rest_api(
    flink_cluster: SessionCluster, tmp_path: Path, cluster_config_text: str
) -> None:
    from conftest import config_text

    config = tmp_path / "taskfabric.toml"
    config.write_text(config_text(tmp_path / "data", cluster_config_text), encoding="utf-8")
    check = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "plugins", "check"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"Flink 2.3.0 at {flink_cluster.rest_url}: 1 task managers" in check.stdout, check.stdout


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

    def run_until_more_than(count: int, stop: Any) -> str:
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
        result = outcome["result"]
        assert result.phase == "SUCCEEDED", result.error
        savepoint = result.python_outputs(flink_jobs.numbers_stream, cluster_engine.store)
        assert isinstance(savepoint, str) and savepoint, savepoint
        assert not flink_cluster.wait_for_no_jobs(timeout=60)
        return savepoint

    # The first run is stopped through the API ...
    first_savepoint = run_until_more_than(0, lambda eid: request_stop(data_root, eid))
    first = _numbers(out)
    assert sorted(first) == list(range(len(first)))  # every record once, none lost

    # ... the second through the command line; it starts from the first one's savepoint.
    def stop_with_the_cli(execution_id: str) -> None:
        config = str(tmp_path / "taskfabric.toml")
        stopped = subprocess.run(
            [sys.executable, "-m", "taskfabric.cli", "--config", config, "flink", "stop",
             execution_id],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert f"stop requested for execution {execution_id}" in stopped.stdout

    second_savepoint = run_until_more_than(len(first), stop_with_the_cli)
    both = _numbers(out)
    assert len(both) > len(first)
    # Resumed from the savepoint: the sequence goes on where it stopped, with no number
    # written twice (a run from scratch would repeat 0, 1, 2, ...) and none skipped.
    assert sorted(both) == list(range(len(both)))
    assert second_savepoint != first_savepoint
