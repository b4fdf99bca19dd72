"""The `taskfabric` command, driven as a user would."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from taskfabric.cli import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "pipeline.py"


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_run_example_then_list_and_show() -> None:
    code, out, err = invoke("run", f"{EXAMPLE}:pipeline", "--stations", "5", "--days", "2")
    assert code == 0, err
    assert "verdict = " in out and "hottest = " in out and "table = File(" in out
    code, out, _ = invoke("executions", "list", "-o", "json")
    rows = json.loads(out)
    assert len(rows) == 1 and rows[0]["phase"] == "SUCCEEDED"
    execution_id = rows[0]["id"]
    code, out, _ = invoke("executions", "show", execution_id[:6])
    assert code == 0
    for text in (
        "SUCCEEDED",
        "list_stations",
        "map_fetch_readings",
        "5 items: 5 succeeded",
        "heat",
        "verdict =",
    ):
        assert text in out, text
    code, out, _ = invoke("executions", "show", execution_id, "-o", "json")
    payload = json.loads(out)
    assert payload["outputs"]["hottest"]["readings"] == 48
    assert {n["node_id"] for n in payload["nodes"]} >= {"n0", "n1", "n1[4]", "n5"}


def test_help_lists_inputs_with_types_and_defaults() -> None:
    code, out, _ = invoke("run", f"{EXAMPLE}:pipeline", "--help")
    assert code == 0
    assert "--stations INT" in out and "(default: 8)" in out
    assert "--alert-above-c" in out and "float" in out


def test_bad_input_value_is_a_usage_error() -> None:
    code, _, err = invoke("run", f"{EXAMPLE}:pipeline", "--stations", "many")
    assert code == 2
    assert "--stations" in err and "int" in err


def test_failing_run_exits_non_zero_with_the_node_error() -> None:
    code, _, err = invoke("run", f"{EXAMPLE}:pipeline", "--stations", "0")
    assert code == 1
    assert "node n0" in err and "count must be at least 1" in err


def test_unknown_workflow_name_lists_the_available_ones() -> None:
    code, _, err = invoke("run", f"{EXAMPLE}:nope")
    assert code == 2
    assert "workflows there: pipeline" in err


def test_type_error_is_reported_before_running(tmp_path: Path) -> None:
    wf = tmp_path / "typo_wf.py"
    wf.write_text(
        textwrap.dedent("""
        from taskfabric import task, workflow

        @task
        def name(n: int) -> str:
            return str(n)

        @task
        def double(x: int) -> int:
            return 2 * x

        @workflow
        def wf(n: int) -> int:
            return double(x=name(n=n))
    """)
    )
    code, _, err = invoke("run", f"{wf}:wf", "--n", "3")
    assert code == 2
    assert "input 'x': expected int, got str" in err
    assert "typo_wf.py:14" in err
    code, out, _ = invoke("executions", "list", "-o", "json")
    assert json.loads(out) == []


SLOW_WF = """
import os, time
from pathlib import Path
from taskfabric import task, workflow, map_task

LOG = Path(os.environ["RUN_LOG"])

@task
def items(n: int) -> list[int]:
    return list(range(n))

@task
def step(x: int) -> int:
    with LOG.open("a") as fh:
        fh.write(f"{x}\\n")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.3")))
    return x * 2

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@workflow
def wf(n: int) -> int:
    return total(xs=map_task(step, concurrency=2)(x=items(n=n)))
"""


def _taskfabric(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "taskfabric.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _succeeded(conn: sqlite3.Connection) -> set[int]:
    """The indices of the map's items that succeeded, from their packed chunks (each item's
    phase is the first byte of its state: metadata/_items.py)."""
    from taskfabric.metadata._items import CHUNK, ITEM, PHASES

    code = PHASES.index("SUCCEEDED")
    return {
        chunk * CHUNK + slot
        for chunk, state in conn.execute("SELECT chunk, state FROM map_item_chunks")
        for slot, phase in enumerate(bytes(state[0 :: ITEM.size]))
        if phase == code
    }


def _succeeded_items(db: Path) -> int:
    try:
        with sqlite3.connect(db) as conn:
            return len(_succeeded(conn))
    except sqlite3.OperationalError:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_runs_no_succeeded_node_again(tmp_path: Path) -> None:
    wf = tmp_path / "slow_wf.py"
    wf.write_text(SLOW_WF)
    log = tmp_path / "runs.log"
    env = dict(os.environ, RUN_LOG=str(log), PYTHONPATH=os.pathsep.join(sys.path))
    db = Path(env["TASKFABRIC_DATA_ROOT"]) / "taskfabric.db"
    proc = _taskfabric("run", f"{wf}:wf", "--n", "12", env=env)
    deadline = time.monotonic() + 30
    while _succeeded_items(db) < 4:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as conn:
        (execution_id, phase) = conn.execute("SELECT id, phase FROM executions").fetchone()
        done_before = _succeeded(conn)
    assert phase == "RUNNING"  # nobody recorded an end: the process died
    assert 4 <= len(done_before) < 12
    ran_before = log.read_text().split()
    env["STEP_SECONDS"] = "0.01"
    resumed = _taskfabric("executions", "resume", execution_id, env=env)
    out, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err
    assert "o0 = 132" in out  # sum(2x for x in 0..11)
    ran_after = [int(x) for x in log.read_text().split()[len(ran_before) :]]
    # every item that had not succeeded ran exactly once more; no succeeded item ran again
    assert sorted(ran_after) == sorted(set(range(12)) - done_before)
    with sqlite3.connect(db) as conn:
        phases = conn.execute(
            "SELECT phase, count(*) FROM node_executions WHERE kind != 'map_item' GROUP BY phase"
        ).fetchall()
        interrupted = conn.execute(
            "SELECT count(*) FROM node_attempts WHERE error LIKE '%Interrupted%'"
        ).fetchone()[0]
        done_after = _succeeded(conn)
    assert phases == [("SUCCEEDED", 3)] and done_after == set(range(12))
    assert 1 <= interrupted <= 2  # the attempts running at the kill (concurrency=2)


@pytest.mark.slow
def test_sigterm_aborts_and_records_the_execution(tmp_path: Path) -> None:
    wf = tmp_path / "slow_wf2.py"
    wf.write_text(SLOW_WF)
    env = dict(
        os.environ,
        RUN_LOG=str(tmp_path / "runs.log"),
        STEP_SECONDS="5",
        PYTHONPATH=os.pathsep.join(sys.path),
    )
    db = Path(env["TASKFABRIC_DATA_ROOT"]) / "taskfabric.db"
    proc = _taskfabric("run", f"{wf}:wf", "--n", "4", env=env)
    deadline = time.monotonic() + 30
    while not (tmp_path / "runs.log").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "aborted" in err
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT phase FROM executions").fetchone()[0] == "ABORTED"
        phases = {p for (p,) in conn.execute("SELECT phase FROM node_executions")}
    assert "RUNNING" not in phases and "ABORTED" in phases


def test_an_empty_listing_says_which_filter_matched_nothing() -> None:
    """`executions list --project nope` once said "no executions yet: `taskfabric run ...`
    starts one", as if there were none at all."""
    code, _, err = invoke("executions", "list")
    assert code == 0 and "no executions yet: `taskfabric run FILE.py:WORKFLOW`" in err
    code, _, err = invoke("executions", "list", "--project", "nope", "--phase", "failed")
    assert code == 0
    assert "no executions match project nope, phase failed" in err, err
