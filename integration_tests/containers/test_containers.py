"""The podman backend against real podman: typed data between containers, limits and OOM,
errors and logs, isolation, concurrency, and the engine's timeout stopping a container."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import container_tasks
import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric_containers._client import ContainerApi
from taskfabric_containers._names import LABEL_EXECUTION


def write_config(folder: Path, url: str, image: str, extra: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "taskfabric.toml"
    path.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{folder / "data"}"

            [engine]
            parallelism = 8

            [task_types]
            python = "podman"

            [backends.podman]
            driver = "podman"
            url = "{url}"
            image = "{image}"
            kill_grace_seconds = 2
            """)
        + extra,
        encoding="utf-8",
    )
    return path


@pytest.fixture
def config_path(tmp_path: Path, podman_url: str, task_image: str) -> Path:
    return write_config(tmp_path / "home", podman_url, task_image, "remove = false\n")


@pytest.fixture
def engine(config_path: Path, plugins: Plugins) -> Iterator[Engine]:
    engine = Engine(load_config(config_path), plugins=plugins)
    yield engine
    engine.close()


def containers_of(api: ContainerApi, execution_id: str) -> list[dict[str, object]]:
    label = f"{LABEL_EXECUTION}={execution_id}"
    found = api.client.api.containers(all=True, filters={"label": label})
    return [api.client.api.inspect_container(c["Id"]) for c in found]


def cli(config: Path, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), *args],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    return proc.stdout + proc.stderr


def test_files_directories_and_dataframes_travel_between_containers(
    engine: Engine, api: ContainerApi
) -> None:
    result = engine.launch(container_tasks.typed_pipeline, {"n": 5})
    assert result.phase == "SUCCEEDED", result.error
    numbers, parts, total = result.python_outputs(container_tasks.typed_pipeline, engine.store)
    assert numbers.read_text() == "0\n1\n2\n3\n4\n"
    assert sorted(p.name for p in parts) == [f"part-{i}.txt" for i in range(5)]
    assert total == 0 + 1 + 4 + 9 + 16
    # Each of the four tasks ran in a container of its own, which exited 0.
    seen = containers_of(api, result.execution_id)
    assert len(seen) == 4
    assert all(c["State"]["ExitCode"] == 0 for c in seen)  # type: ignore[index]


def test_out_of_memory_is_a_clear_task_error(engine: Engine, api: ContainerApi) -> None:
    result = engine.launch(container_tasks.memory_hog, {"mib": 400})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "OutOfMemory", result.error
    assert result.error["message"].startswith("killed: out of memory, limit 64 MiB"), result.error
    (container,) = containers_of(api, result.execution_id)
    assert container["HostConfig"]["Memory"] == 64 * 2**20  # type: ignore[index]


def test_a_failing_task_shows_its_error_and_log(engine: Engine, config_path: Path) -> None:
    result = engine.launch(container_tasks.failing, {"reason": "no rows"})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "ValueError"
    assert result.error["message"] == "the task gave up: no rows"
    shown = cli(config_path, "executions", "show", result.execution_id)
    assert "the task gave up: no rows" in shown, shown
    logs = cli(config_path, "executions", "logs", result.execution_id, "n0")
    assert "about to fail: no rows" in logs, logs
    assert "ValueError: the task gave up: no rows" in logs, logs


def test_the_container_sees_neither_the_config_nor_the_database(
    engine: Engine, config_path: Path
) -> None:
    database = engine.config.data_root / "taskfabric.db"
    assert database.is_file()
    paths = [str(config_path), str(database)]
    result = engine.launch(container_tasks.snoop, {"paths": paths})
    assert result.phase == "SUCCEEDED", result.error
    seen = result.python_outputs(container_tasks.snoop, engine.store)
    assert seen[:2] == [f"{p}: absent" for p in paths]
    assert seen[2] == "env: "  # no TASKFABRIC_* variable (config path, tokens) reached it


def test_a_map_of_20_never_runs_more_than_4_containers(engine: Engine, api: ContainerApi) -> None:
    result = engine.launch(container_tasks.paced_map, {"n": 20, "seconds": 0.5})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(container_tasks.paced_map, engine.store) == list(range(20))
    items = [
        c for c in containers_of(api, result.execution_id)
        if "[" in str(c["Config"]["Labels"]["taskfabric.node_id"])  # type: ignore[index]
    ]  # fmt: skip
    assert len(items) == 20
    events: list[tuple[datetime, int]] = []
    for c in items:
        state = c["State"]
        events.append((_time(state["StartedAt"]), 1))  # type: ignore[index]
        events.append((_time(state["FinishedAt"]), -1))  # type: ignore[index]
    running = most = 0
    for _, step in sorted(events, key=lambda e: (e[0], e[1])):  # ends before starts
        running += step
        most = max(most, running)
    assert 2 <= most <= 4, most


def _time(text: str) -> datetime:
    # RFC 3339 with nanoseconds: keep microseconds for fromisoformat.
    head, _, rest = text.partition(".")
    digits = "".join(ch for ch in rest if ch.isdigit())[:6]
    zone = rest[rest.find("+") :] if "+" in rest else ("+00:00" if rest.endswith("Z") else "")
    return datetime.fromisoformat(f"{head}.{digits.ljust(6, '0')}{zone}")


def test_a_task_sets_its_own_env_and_network_when_the_backend_allows_it(
    tmp_path: Path, podman_url: str, task_image: str, plugins: Plugins
) -> None:
    allowed = write_config(
        tmp_path / "a", podman_url, task_image, 'task_overrides = ["env", "network"]\n'
    )
    engine = Engine(load_config(allowed), plugins=plugins)
    try:
        result = engine.launch(container_tasks.task_settings, {})
    finally:
        engine.close()
    assert result.phase == "SUCCEEDED", result.error
    greeting, *interfaces = result.python_outputs(container_tasks.task_settings, engine.store)
    assert greeting == "hello from the task"
    assert set(interfaces) - {"lo"}, interfaces  # the host's network, not "none"
    # By default a task may set its env only: asking for a network is a clear task error.
    engine = Engine(
        load_config(write_config(tmp_path / "d", podman_url, task_image)), plugins=plugins
    )
    try:
        refused = engine.launch(container_tasks.task_settings, {})
    finally:
        engine.close()
    assert refused.phase == "FAILED" and refused.error is not None
    assert refused.error["code"] == "InvalidBackendOptions", refused.error
    assert "sets network, which backend 'podman' does not let tasks set" in refused.error["message"]
    assert "task_overrides` in [backends.podman]" in refused.error["message"]


def test_a_timeout_stops_the_container(
    tmp_path: Path, podman_url: str, task_image: str, plugins: Plugins, api: ContainerApi
) -> None:
    config = write_config(tmp_path / "t", podman_url, task_image, "remove = false\n")
    engine = Engine(load_config(config), plugins=plugins)
    try:
        result = engine.launch(container_tasks.slow_with_timeout, {"seconds": 120.0})
    finally:
        engine.close()
    assert result.phase == "FAILED"
    assert result.error is not None and result.error["code"] == "Timeout", result.error
    (container,) = containers_of(api, result.execution_id)
    assert container["State"]["Running"] is False  # type: ignore[index]


def test_a_task_holds_pool_slots_through_the_engine_from_its_container(
    tmp_path: Path, podman_url: str, task_image: str, plugins: Plugins
) -> None:
    config = write_config(tmp_path / "p", podman_url, task_image, "\n[pools.api]\nslots = 1\n")
    engine = Engine(load_config(config), plugins=plugins)
    try:
        result = engine.launch(container_tasks.holding, {"n": 3})
    finally:
        engine.close()
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(container_tasks.holding, engine.store) == [0, 1, 2]


def test_a_container_whose_end_cannot_be_read_fails_its_attempt(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread that follows a container is all that watches its attempt: should reading
    its end raise, the attempt fails saying so (and is retried), never waits for ever."""
    from taskfabric.testing._harness import launch
    from taskfabric_containers._backend import ContainerBackend

    def unreadable(self: ContainerBackend, run: object, code: int, oom_killed: bool) -> None:
        raise OSError("the attempt's folder is gone")

    monkeypatch.setattr(ContainerBackend, "_status", unreadable)
    result = launch(engine, container_tasks.failing, {}, task_type="python", deadline=120)
    assert result.phase == "FAILED", result
    assert result.error is not None
    assert result.error["code"] == "ContainerWatchFailed", result.error
    assert "the attempt's folder is gone" in result.error["message"]
