"""`kill -9` of the engine while a container runs, then `executions resume`: the resumed engine
re-attaches to that container (the contract's re-attach protocol) and never starts a second
one for the attempt."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from test_containers import write_config

from taskfabric_containers._client import ContainerApi

TASKS = Path(__file__).with_name("container_tasks.py")


def test_kill_9_then_resume_reattaches_to_the_running_container(
    tmp_path: Path, podman_url: str, task_image: str, api: ContainerApi
) -> None:
    mark = uuid.uuid4().hex
    config = write_config(
        tmp_path / "home",
        podman_url,
        task_image,
        f'remove = false\nlabels = {{ "taskfabric.test" = "{mark}" }}\n',
    )
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("TASKFABRIC_DATA_ROOT", None)  # the config's data root, for both engines
    base = [sys.executable, "-m", "taskfabric.cli", "--config", str(config)]
    engine = subprocess.Popen(
        [*base, "run", f"{TASKS}:slow", "--seconds", "20"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        container = _wait_for_running(api, mark, deadline=time.monotonic() + 240)
    finally:
        os.killpg(engine.pid, signal.SIGKILL)
        engine.wait()
    execution_id = container["Config"]["Labels"]["taskfabric.execution_id"]
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
    # One container for the attempt: the one the killed engine started, now ended.
    found = api.client.api.containers(all=True, filters={"label": f"taskfabric.test={mark}"})
    assert [c["Id"] for c in found] == [container["Id"]]
    state = api.client.api.inspect_container(container["Id"])["State"]
    assert state["Running"] is False and state["ExitCode"] == 0


def _wait_for_running(api: ContainerApi, mark: str, deadline: float) -> dict[str, object]:
    while time.monotonic() < deadline:
        found = api.client.api.containers(filters={"label": f"taskfabric.test={mark}"})
        if found:
            info: dict[str, object] = api.client.api.inspect_container(found[0]["Id"])
            return info
        time.sleep(0.2)
    raise AssertionError("the engine started no container in 240 s")
