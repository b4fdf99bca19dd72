"""`kill -9` of the engine while a pod runs, then `executions resume`: the resumed engine
re-attaches to that pod by its name (the contract's re-attach protocol) and never creates a
second one for the attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from conftest import NAMESPACE, Cluster
from test_kubernetes import write_config

from taskfabric_kubernetes._names import LABEL_BACKEND, LABEL_EXECUTION

TASKS = Path(__file__).with_name("kube_tasks.py")


def test_kill_9_then_resume_reattaches_to_the_running_pod(tmp_path: Path, cluster: Cluster) -> None:
    config = write_config(tmp_path / "home", cluster, backend="k8skill")
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TASKFABRIC_DATA_ROOT", None)  # the config's data root, for both engines
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(config)]
    started = time.time() - 5
    engine = subprocess.Popen(
        [*base, "run", f"{TASKS}:slow", "--seconds", "15"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        pod = _wait_for_running(cluster, started)
    finally:
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
    execution_id = pod.metadata.labels[LABEL_EXECUTION]
    resumed = subprocess.run(
        [*base, "executions", "resume", execution_id],
        capture_output=True, text=True, timeout=600, env=env, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    shown = subprocess.run(
        [*base, "executions", "show", execution_id, "-o", "json"],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    data = json.loads(shown.stdout)
    assert data["execution"]["phase"] == "SUCCEEDED", data
    # One pod for the attempt: the one the killed engine created, now ended.
    found = cluster.core.list_namespaced_pod(
        NAMESPACE, label_selector=f"{LABEL_EXECUTION}={execution_id}"
    ).items
    assert [p.metadata.uid for p in found] == [pod.metadata.uid]
    assert found[0].status.phase == "Succeeded"


def _wait_for_running(cluster: Cluster, since: float) -> Any:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        pods = cluster.core.list_namespaced_pod(
            NAMESPACE, label_selector=f"{LABEL_BACKEND}=k8skill"
        ).items
        for pod in pods:
            created = pod.metadata.creation_timestamp.timestamp()
            if created >= since and pod.status.phase == "Running":
                return pod
        time.sleep(0.2)
    raise AssertionError("the engine started no pod in 240 s")
