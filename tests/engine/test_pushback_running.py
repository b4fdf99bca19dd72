"""A backend that retries throttled work itself reports the pushback while the attempt runs:
the engine pauses the pool at once, not when the attempt ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from taskfabric import task, workflow
from taskfabric.config import Config, PoolConfig, StorageConfig
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.plugin_api import (
    BACKENDS_GROUP,
    RUNNING,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendSettings,
    TaskAttempt,
)
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.types import default_engine

SEEN: dict[str, float | None] = {}


class ThrottledBackend(Backend[BackendSettings]):
    """Each attempt is throttled once (pushback on a RUNNING status), then succeeds after the
    test saw the pool paused."""

    driver: ClassVar[str] = "throttled"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._status: dict[str, AttemptStatus] = {}
        self._lock = threading.Lock()

    def submit(self, attempt: TaskAttempt) -> None:
        threading.Thread(target=self._run, args=(attempt,), daemon=True).start()

    def _run(self, attempt: TaskAttempt) -> None:
        with self._lock:
            self._status[attempt.attempt_id] = AttemptStatus(
                AttemptPhase.RUNNING, pushback={"api": 60.0}
            )
        attempt.notify(attempt.attempt_id)
        deadline = time.monotonic() + 10
        while "paused_until" not in SEEN and time.monotonic() < deadline:
            time.sleep(0.02)  # the test's task reads the pool's state meanwhile
        outputs = types_pb2.LiteralMap(literals={"o0": default_engine().to_literal(7, int)})
        with self._lock:
            self._status[attempt.attempt_id] = AttemptStatus(
                AttemptPhase.SUCCEEDED, outputs=outputs
            )
        attempt.notify(attempt.attempt_id)

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            status = self._status.get(attempt_id, RUNNING)
            if status.phase is AttemptPhase.RUNNING and status.pushback:
                self._status[attempt_id] = RUNNING  # report a pushback once
            return status

    def cancel(self, attempt_id: str) -> None:
        pass


@task(pools={"api": 1})
def throttled() -> int: ...


@workflow
def wf() -> int:
    return throttled()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "throttled", ThrottledBackend)
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        pools={"api": PoolConfig(slots=2, rate=10)},
        task_types={"python": "throttled"},
    )
    with use_plugins(plugins), Engine(config, plugins=plugins) as eng:
        yield eng


def test_pushback_of_a_running_attempt_pauses_the_pool_at_once(engine: Engine) -> None:
    SEEN.clear()
    watcher_done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            (status,) = engine.pool_manager.status(["api"])
            if status.paused_until is not None:
                SEEN["paused_until"] = status.paused_until
                break
            time.sleep(0.02)
        watcher_done.set()

    started = time.time()
    threading.Thread(target=watch, daemon=True).start()
    result = engine.launch(wf, {})
    watcher_done.wait(10)
    assert result.phase == "SUCCEEDED", result.error
    paused = SEEN.get("paused_until")
    assert paused is not None, "the pool was never paused while the attempt ran"
    assert paused >= started + 59
