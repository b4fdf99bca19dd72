"""The spark-submit backend against a real standalone master and worker on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import spark_jobs
import spark_sales

from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric_spark.examples import pyspark_examples
from taskfabric_spark.testing import StandaloneCluster


def _apps_named(cluster: StandaloneCluster, execution_id: str) -> list[dict[str, object]]:
    state = cluster.state()
    apps = state.get("activeapps", []) + state.get("completedapps", [])
    return [a for a in apps if execution_id in str(a.get("name"))]


def _show(config: Path, execution_id: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "executions", "show",
         execution_id, "--no-values"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    return proc.stdout + proc.stderr


def test_dataframe_workflow_runs_as_spark_applications(
    submit_engine: Engine, spark_cluster: StandaloneCluster, submit_config: Path
) -> None:
    result = submit_engine.launch(spark_sales.sales_report, {"days": 2})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(spark_sales.sales_report, submit_engine.store) == "east"
    # Each Spark task was an application of the standalone master, and has ended.
    apps = _apps_named(spark_cluster, result.execution_id)
    assert sorted(str(a["name"]).split("-")[1] for a in apps) == [
        "spark_sales.load_sales",
        "spark_sales.revenue",
    ]
    assert all(a["state"] == "FINISHED" for a in apps), apps
    # The DataFrame literal carries the frame's column types and points at its part files.
    nodes = {n.node_id: n for n in submit_engine.metadata.nodes(result.execution_id)}
    from taskfabric.core.v1 import types_pb2

    outputs = types_pb2.LiteralMap()
    outputs.ParseFromString(submit_engine.literals.get(nodes["n1"].outputs_uri))
    frame = outputs.literals["o0"].dataframe
    assert [c.name for c in frame.type.columns] == ["region", "revenue"]
    assert frame.type.format == "parquet"
    local = submit_engine.store.local_path(frame.uri)
    assert local is not None
    assert len(list(local.glob("part-*.parquet"))) == 2
    # The driver logs are in the blob store, linked from the attempts and shown.
    attempts = submit_engine.metadata.attempts(result.execution_id)
    spark_attempts = [a for a in attempts if a.node_id in ("n0", "n1")]
    for attempt in spark_attempts:
        links = {link["name"]: link["uri"] for link in attempt.log_links}
        driver_log = submit_engine.store.get_bytes(links["spark-driver"]).decode()
        assert "taskfabric-spark: application app-" in driver_log
        assert links["spark-app"].startswith(f"{spark_cluster.webui_url}/app/?appId=app-")
    shown = _show(submit_config, result.execution_id)
    assert "spark-driver: file://" in shown, shown
    assert "spark-app: http://127.0.0.1" in shown, shown


def test_pyspark_example_programs_run_unchanged_as_applications(
    submit_engine: Engine, spark_cluster: StandaloneCluster
) -> None:
    """pi.py, wordcount.py and sort.py from the installed pyspark, each ending with its own
    spark.stop(), each an application of the standalone master."""
    result = submit_engine.launch(pyspark_examples, {"partitions": 2})
    assert result.phase == "SUCCEEDED", result.error
    pi, words, numbers = result.python_outputs(pyspark_examples, submit_engine.store)
    assert pi.startswith("Pi is roughly 3."), pi
    assert "to: 3" in words.splitlines() and "be: 2" in words.splitlines(), words
    assert numbers.split() == ["-2", "4", "30", "100"], numbers
    apps = _apps_named(spark_cluster, result.execution_id)
    assert len(apps) == 3 and all(a["state"] == "FINISHED" for a in apps), apps


def test_failing_spark_job_reports_the_python_error(
    submit_engine: Engine, submit_config: Path
) -> None:
    result = submit_engine.launch(spark_jobs.failing_job, {"n": 3})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "PythonException", result.error
    assert result.error["message"] == "a Python worker raised ZeroDivisionError: division by zero"
    (attempt,) = submit_engine.metadata.attempts(result.execution_id)
    assert attempt.error is not None
    assert attempt.error["kind"] == "user"
    traceback = attempt.error["traceback"]
    assert "spark_jobs.py" in traceback and len(traceback.splitlines()) < 60, traceback
    shown = _show(submit_config, result.execution_id)
    assert "PythonException: a Python worker raised ZeroDivisionError: division by zero" in shown
    assert "log spark-driver: file://" in shown, shown


def test_cancel_mid_job_leaves_no_application_running(
    submit_engine: Engine, spark_cluster: StandaloneCluster, tmp_path: Path
) -> None:
    marker = tmp_path / "app-id"
    outcome: dict[str, object] = {}

    def launch() -> None:
        outcome["result"] = submit_engine.launch(
            spark_jobs.long_running,
            {"marker": str(marker)},
            on_start=lambda execution_id: outcome.setdefault("id", execution_id),
        )

    thread = threading.Thread(target=launch)
    thread.start()
    deadline = time.monotonic() + 120
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert marker.exists(), "the Spark task never started"
    app_id = marker.read_text()
    # The job is running on the cluster: the application is active with an executor.
    assert any(a["id"] == app_id for a in spark_cluster.running_apps())
    submit_engine.request_cancel(str(outcome["id"]))
    thread.join(timeout=120)
    assert not thread.is_alive()
    result = outcome["result"]
    assert getattr(result, "phase", None) == "ABORTED", result
    left = spark_cluster.wait_for_no_apps(timeout=30)
    assert not left, f"applications still running after the cancel: {left}"
    ended = [a for a in spark_cluster.state()["completedapps"] if a["id"] == app_id]
    assert ended and ended[0]["state"] in ("FINISHED", "KILLED"), ended


def test_kill_9_of_the_engine_then_resume_starts_no_second_application(
    spark_cluster: StandaloneCluster, submit_config: Path, tmp_path: Path
) -> None:
    runs, go = tmp_path / "runs.txt", tmp_path / "go"

    def cli(*args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "taskfabric.cli", "--config", str(submit_config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    workflow = f"{Path(spark_jobs.__file__).resolve()}:gated"
    engine = cli("run", workflow, "--runs", str(runs), "--go", str(go))
    deadline = time.monotonic() + 150
    while not (runs.exists() and runs.read_text().strip()):
        assert engine.poll() is None, engine.communicate()
        assert time.monotonic() < deadline, "the Spark application never started"
        time.sleep(0.2)
    engine.kill()  # SIGKILL: the engine records nothing more
    engine.communicate()
    (app_id,) = runs.read_text().split()
    assert any(a["id"] == app_id for a in spark_cluster.running_apps()), "the app died too"
    (execution_id,) = _running_executions(submit_config)
    resumed = cli("--log-level", "info", "executions", "resume", execution_id)
    assert resumed.stderr is not None
    for line in resumed.stderr:
        if "re-attached to the attempt's process" in line:
            break
    else:
        pytest.fail(f"the resumed engine did not re-attach: {resumed.communicate()}")
    go.touch()
    out, err = resumed.communicate(timeout=150)
    assert resumed.returncode == 0, err
    assert f'o0 = "{app_id}"' in out, out
    assert runs.read_text().split() == [app_id]  # the task ran once, in one application
    apps = _apps_named(spark_cluster, execution_id)
    assert [a["id"] for a in apps] == [app_id], apps
    assert not spark_cluster.wait_for_no_apps(timeout=60)


def _running_executions(config: Path) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "executions", "list",
         "--phase", "RUNNING", "-o", "json"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return [row["id"] for row in json.loads(proc.stdout)]


def test_an_unreachable_master_fails_fast_naming_the_master_and_the_cause(
    tmp_path: Path, plugins: Plugins, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    from taskfabric.config import load_config

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the socket is: nothing listens there
    master = f"spark://127.0.0.1:{port}"
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n[task_types]\nspark = "cluster"\n\n'
        f'[backends.cluster]\ndriver = "spark-submit"\nmaster = "{master}"\n'
        "connect_timeout_seconds = 5\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("TASKFABRIC_CONFIG", str(config))
    engine = Engine(load_config(config), plugins=plugins)
    try:
        result = engine.launch(spark_jobs.failing_job, {"n": 3})
    finally:
        engine.close()
    assert result.phase == "FAILED"
    assert result.error is not None
    message = str(result.error)
    assert master in message, message
    assert "Connection refused" in message, message
    assert "Py4JJavaError" not in message, message
