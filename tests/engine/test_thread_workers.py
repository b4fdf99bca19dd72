"""`ThreadBackend`'s worker threads: a chain's attempts, one after another, all run on the
one thread that ran the first (it counts itself idle before it reports an attempt's end, so
the next submit, made when the loop hears of that end, never starts a second one)."""

from __future__ import annotations

import threading
from pathlib import Path

from taskfabric import map_task, task, workflow
from taskfabric.backends import ThreadBackend, attempt_work_dir
from taskfabric.config import Config, EngineConfig, StorageConfig
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.plugin_api import BACKENDS_GROUP, AttemptStatus, BackendSettings, TaskAttempt
from taskfabric.plugins import Plugins, use_plugins

#: by attempt id: the threads the backend had started once it was submitted
STARTED: dict[str, int] = {}
#: by attempt id: the thread that ran it
RAN_ON: dict[str, str] = {}
_lock = threading.Lock()


class _Settings(BackendSettings):
    workers: int | None = None


class Counting(ThreadBackend[_Settings]):
    driver = "counting"
    settings_model = _Settings

    def submit(self, attempt: TaskAttempt) -> None:
        super().submit(attempt)
        with _lock:
            STARTED[attempt.attempt_id] = len(self._threads)

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        with _lock:
            RAN_ON[attempt.attempt_id] = threading.current_thread().name
        return super().run_attempt(attempt)


@task
def step(x: int) -> int:
    return x + 1


@workflow
def chain(x: int) -> int:
    for _ in range(30):
        x = step(x=x)
    return x


def test_a_chain_runs_on_one_worker_thread(tmp_path: Path) -> None:
    STARTED.clear()
    RAN_ON.clear()
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "counting", Counting)
    config = Config(
        storage=StorageConfig(data_root=tmp_path),
        engine=EngineConfig(parallelism=8),
        task_types={"python": "counting"},
        backends={"counting": {"driver": "counting"}},  # type: ignore[dict-item]
    )
    with use_plugins(plugins), Engine(config, plugins=plugins) as engine:
        result = engine.launch(chain, {"x": 0})
        assert result.succeeded, result.error
        assert result.python_outputs(chain, engine.store, tmp_path) == 30
    assert len(STARTED) == len(RAN_ON) == 30
    assert set(STARTED.values()) == {1}, "a second worker thread was started"
    assert len(set(RAN_ON.values())) == 1


def test_the_cancel_event_of_an_attempt_behaves_as_a_threading_event() -> None:
    """`TaskCall.cancelled` on the thread backends is built more cheaply than
    `threading.Event()`: set in one thread, it wakes a waiter in another."""
    from taskfabric.backends._threads import _CancelEvent

    event = _CancelEvent()
    assert isinstance(event, threading.Event)
    assert not event.is_set()
    assert not event.wait(0)
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(event.wait()))
    waiter.start()
    event.set()
    waiter.join()
    assert woke == [True]
    assert event.is_set()
    event.clear()
    assert not event.is_set()


@task
def double(x: int) -> int:
    return 2 * x


@workflow
def doubled(xs: list[int]) -> list[int]:
    return map_task(double)(x=xs)


def test_a_map_on_the_thread_backend_writes_one_pack_segment(tmp_path: Path) -> None:
    """A worker thread defers its attempt's packed outputs (`ThreadBackend.run_attempt`): the
    loop writes them with its own documents, into the execution's one deferred segment,
    before the commit that records the success (tests/engine/test_documents_on_disk.py checks
    that order at every commit). Written by the workers at once, they made a second one."""
    config = Config(storage=StorageConfig(data_root=tmp_path), engine=EngineConfig(parallelism=4))
    with Engine(config) as engine:
        result = engine.launch(doubled, {"xs": list(range(40))})
        assert result.python_outputs(doubled, engine.store, tmp_path) == [2 * x for x in range(40)]
        execution = engine.store.uri("executions", result.execution_id)
        packs = engine.store.local_path(f"{execution}/packs")
    assert packs is not None
    assert len(list(packs.iterdir())) == 1


def test_a_workers_attempt_folder_is_attempt_work_dir(tmp_path: Path) -> None:
    """`ThreadBackend` joins an attempt's folder to its execution's, kept: the same folder
    as `attempt_work_dir` (where a re-attaching engine, `executions logs` and the sweep look)."""
    config = Config(storage=StorageConfig(data_root=tmp_path))
    with Engine(config) as engine:
        template = doubled.compile().tasks[0]
        backend = engine.backends.for_task(template, project="p")
        assert isinstance(backend, ThreadBackend)
        for execution_id, node_id, number, where in (
            ("e1", "n0[3]", 1, "e1/n0/3/1"),
            ("e1", "n0[70]", 2, "e1/n0/70/2"),
            ("e2", "n1/n0", 1, "e2/n1/n0/1"),
        ):
            attempt = TaskAttempt(
                attempt_id=f"{execution_id}/{node_id}/{number}",
                execution_id=execution_id,
                node_id=node_id,
                attempt=number,
                task=template,
                inputs=types_pb2.LiteralMap(),
                inputs_uri="",
                outputs_uri="",
                raw_prefix="",
                notify=lambda _: None,
            )
            found = backend._work_dir(attempt)
            assert found == attempt_work_dir(backend.context, attempt)
            assert found == backend.context.work_root / where
