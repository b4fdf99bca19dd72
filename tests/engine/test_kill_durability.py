"""What a real `kill -9` of the engine costs: the attempts the database shows running (at
most `parallelism`), which the resume runs again; never an attempt whose end had been
recorded before another one started. Each engine process kills itself with SIGKILL at an
exact point (in a task, right before or right after one of its commits), with a commit window
of an hour, so that no group commit would have written anything otherwise; another process
then resumes the execution. Checked by order and counts, not timed.

One driver process imports taskfabric once and forks an engine process per case (forked
before any engine, thread or connection exists in it), then resumes each killed execution
itself, as `taskfabric executions resume` does (`Engine.resume`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from typing import Any

import pytest

WORKFLOW = """
import os
import signal
from pathlib import Path

from taskfabric import map_task, task, workflow

RUNS = Path("runs.txt")  # set per case by the driver
KILL = ""  # set in the engine process to be killed: task:N


@task
def step(x: int) -> int:
    with RUNS.open("a") as fh:  # one line per run of the body, written before any kill
        fh.write(f"{x}\\n")
    if KILL == f"task:{x}":
        os.kill(os.getpid(), signal.SIGKILL)
    return x + 1


@task
def numbers(n: int) -> list[int]:
    return list(range(100, 100 + n))


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@workflow
def chain(x: int) -> int:
    for _ in range(8):
        x = step(x=x)
    return x


@workflow
def fan_out(n: int) -> int:
    return total(xs=map_task(step)(x=numbers(n=n)))
"""

DRIVER = '''
import json
import os
import signal
import sys
from pathlib import Path

import kill_wf
from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.engine import Engine
from taskfabric.metadata import MetadataStore

root = Path(sys.argv[1])
parallelism = int(sys.argv[2])
results = {}


def config(data):
    return Config(
        storage=StorageConfig(data_root=data),
        engine=EngineConfig(parallelism=parallelism, commit_seconds=3600, heartbeat_seconds=3600),
    )


def killed_run(data, wf, inputs, kill_at):
    """In a forked engine process: run `wf`, killed at `kill_at`."""
    when, _, nth = kill_at.partition(":")
    if when == "task":
        kill_wf.KILL = kill_at
    else:  # before-commit:N, after-commit:N
        apply, commits = MetadataStore.apply, [0]

        def killing_apply(self, batch):
            commits[0] += 1
            if when == "before-commit" and commits[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)
            apply(self, batch)
            if when == "after-commit" and commits[0] == int(nth):
                os.kill(os.getpid(), signal.SIGKILL)

        MetadataStore.apply = killing_apply
    with Engine(config(data)) as engine:
        engine.launch(wf, inputs)
    os._exit(3)  # not killed


cases = json.loads(sys.argv[3])
# Every engine process is forked first, while this one runs no thread.
killed = {}
for name, workflow, inputs, kill_at in cases:
    data = root / name
    data.mkdir()
    # the database made here (migrations, their imports), not in each engine process
    MetadataStore(config(data).metadata_url).close()
    kill_wf.RUNS = data / "runs.txt"
    pid = os.fork()
    if pid == 0:
        try:
            killed_run(data, getattr(kill_wf, workflow), inputs, kill_at)
        finally:
            os._exit(4)
    _, status = os.waitpid(pid, 0)
    killed[name] = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
for name, workflow, inputs, kill_at in cases:
    if not killed[name]:
        results[name] = {"killed": False}
        continue
    data = root / name
    runs = kill_wf.RUNS = data / "runs.txt"
    before = runs.read_text().split() if runs.exists() else []
    runs.unlink(missing_ok=True)
    with Engine(config(data)) as engine:
        (execution,) = engine.metadata.list_executions()
        latest = {a.node_id: a for a in engine.metadata.attempts(execution.id)}
        running = sorted(n for n, a in latest.items() if a.phase == "RUNNING")
        result = engine.resume(execution.id, workflow=getattr(kill_wf, workflow))
    after = runs.read_text().split() if runs.exists() else []
    results[name] = {
        "killed": killed[name],
        "running": running,
        "before": before,
        "after": after,
        "succeeded": result.succeeded,
        "output": result.outputs.literals["o0"].integer if result.outputs else None,
    }
print(json.dumps(results))
'''

PARALLELISM = 4
CHAIN_CASES = ["task:3", "before-commit:4", "after-commit:4", "before-commit:8"]
MAP_CASES = ["task:112", "before-commit:7"]
MAP_ITEMS = 24


@pytest.fixture(scope="module")
def killed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every case's outcome: killed or not, the attempts the database showed running after
    the kill, the runs of task bodies before the kill and after the resume, the result."""
    folder = tmp_path_factory.mktemp("kill9")
    (folder / "kill_wf.py").write_text(WORKFLOW)
    (folder / "driver.py").write_text(DRIVER)
    cases = [[f"chain-{k}", "chain", {"x": 0}, k] for k in CHAIN_CASES]
    cases += [[f"map-{k}", "fan_out", {"n": MAP_ITEMS}, k] for k in MAP_CASES]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(folder), *sys.path]))
    env.pop("TASKFABRIC_DATA_ROOT", None)
    env.pop("TASKFABRIC_CONFIG", None)
    proc = subprocess.run(
        [
            sys.executable,
            str(folder / "driver.py"),
            str(folder),
            str(PARALLELISM),
            json.dumps(cases),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    outcome: dict[str, dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return outcome


@pytest.mark.parametrize("kill_at", CHAIN_CASES)
def test_a_killed_chain_runs_again_only_the_attempt_in_flight(
    killed: dict[str, dict[str, Any]], kill_at: str
) -> None:
    k = killed[f"chain-{kill_at}"]
    assert k["killed"], f"the engine was not killed at {kill_at}"
    assert k["succeeded"] and k["output"] == 8
    before, after = Counter(map(int, k["before"])), Counter(map(int, k["after"]))
    # every step ran, once before the kill and/or once after the resume
    assert set(before) | set(after) == set(range(8))
    assert max(before.values()) == 1 and max(after.values(), default=1) == 1
    # what ran on both sides of the kill is what the database showed running: at most one
    # attempt in a chain (step(x=i) is node n{i})
    again = set(before) & set(after)
    assert {f"n{x}" for x in again} <= set(k["running"]), k
    assert len(k["running"]) <= 1, k
    # the steps recorded as done are not run again, nothing ran before its predecessor
    assert list(after) == list(range(min(after, default=8), 8)), k
    if kill_at.startswith("task:"):
        assert again == {int(kill_at.partition(":")[2])}, k  # the one in flight runs again


@pytest.mark.parametrize("kill_at", MAP_CASES)
def test_a_killed_map_runs_again_only_the_attempts_in_flight(
    killed: dict[str, dict[str, Any]], kill_at: str
) -> None:
    k = killed[f"map-{kill_at}"]
    assert k["killed"], f"the engine was not killed at {kill_at}"
    items = set(range(100, 100 + MAP_ITEMS))
    assert k["succeeded"] and k["output"] == sum(x + 1 for x in items)
    before, after = Counter(map(int, k["before"])), Counter(map(int, k["after"]))
    assert set(before) | set(after) == items
    assert max(before.values()) == 1 and max(after.values(), default=1) == 1
    # the items run again are among those the database showed running (n1[i] is item
    # 100 + i), at most one per slot
    again = set(before) & set(after)
    assert all(node_id.startswith("n1[") for node_id in k["running"]), k
    running = {100 + int(node_id[3:-1]) for node_id in k["running"]}
    assert again <= running, k
    assert len(running) <= PARALLELISM, k
    if kill_at.startswith("task:"):
        assert 112 in again, k
