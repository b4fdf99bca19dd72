"""Registered code runs from its bundle: two versions of one workflow at the same time, and the
scheduler's launches through `Engine.enqueue`, run by the worker pool."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from registry_helpers import flows_package, utc

from taskfabric.config import load_config
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine, WorkerPool
from taskfabric.registry import Registry, Scheduler, enqueue_launcher

P, D = "acme", "staging"


@pytest.fixture
def engine() -> Iterator[Engine]:
    eng = Engine(load_config())
    yield eng
    eng.close()


def _run_all(engine: Engine, ids: list[str], timeout: float = 90) -> dict[str, int]:
    pool = WorkerPool(engine.config, workers=2, poll_seconds=0.1)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            pool.step()
            recs = [engine.metadata.get_execution(i) for i in ids]
            if all(r is not None and r.phase in {"SUCCEEDED", "FAILED"} for r in recs):
                break
            time.sleep(0.1)
    finally:
        pool.shutdown()
    results = {}
    for i in ids:
        rec = engine.metadata.get_execution(i)
        assert rec is not None and rec.phase == "SUCCEEDED", rec
        outputs = engine.read_literals(rec.outputs_uri)
        assert outputs is not None
        results[rec.name] = outputs.literals["o0"].integer
    return results


def _ints(**values: int) -> dict[str, types_pb2.Literal]:
    return {k: types_pb2.Literal(integer=v) for k, v in values.items()}


@pytest.mark.parametrize("backend", ["local", "subprocess"])
def test_two_versions_run_side_by_side_from_their_bundles(
    backend: str, tmp_path: Path, taskfabric_home: Path
) -> None:
    if backend == "subprocess":  # attempts in processes of their own import from the bundle
        (taskfabric_home / "config.toml").write_text('[task_types]\npython = "subprocess"\n')
    engine = Engine(load_config())
    try:
        _two_versions(engine, tmp_path)
    finally:
        engine.close()


def _two_versions(engine: Engine, tmp_path: Path) -> None:
    registry = Registry(engine.metadata, engine.store)
    registry.register(flows_package(tmp_path / "one", factor=2), project=P, domain=D, version="v1")
    registry.register(flows_package(tmp_path / "two", factor=10), project=P, domain=D, version="v2")
    # the source trees are gone: workers can only use the bundles
    for folder in ("one", "two"):
        for f in (tmp_path / folder / "acme").iterdir():
            f.unlink()
    launch = enqueue_launcher(engine)
    ids = [
        launch(
            registry.prepare_workflow_launch(
                P,
                D,
                "acme.flows.pipeline",
                version=v,
                inputs=_ints(n=n, bonus=b),
                execution_name=name,
            )
        )
        for v, n, b, name in (("v1", 2, 1, "old"), ("v2", 3, 0, "new"))
    ]
    # n=2, factor 2: (0+1)*2 + 1*2 = 4; n=3, factor 10: (0+1+2)*10 + 0 = 30
    assert _run_all(engine, ids) == {"old": 4, "new": 30}
    rec = engine.metadata.get_execution(ids[1])
    assert rec is not None and rec.workflow_version == "v2" and "bundle" in rec.code


def test_scheduled_launches_are_enqueued_and_run(engine: Engine, tmp_path: Path) -> None:
    clock = [utc(2026, 6, 1, 10, 30)]
    registry = Registry(engine.metadata, engine.store, clock=lambda: clock[0])
    registry.register(flows_package(tmp_path / "src", factor=3), project=P, domain=D, version="v1")
    registry.activate(P, D, "hourly", "v1")
    scheduler = Scheduler(registry, enqueue_launcher(engine), lambda: clock[0])
    clock[0] = utc(2026, 6, 1, 12, 0, 5)
    ids = scheduler.tick()
    assert len(ids) == 2 and scheduler.tick() == []
    recs = [engine.metadata.get_execution(i) for i in ids]
    assert [(r.name, r.launch_plan, r.scheduled_at, r.phase) for r in recs if r] == [
        ("hourly-20260601T110000Z", "hourly:v1", utc(2026, 6, 1, 11), "QUEUED"),
        ("hourly-20260601T120000Z", "hourly:v1", utc(2026, 6, 1, 12), "QUEUED"),
    ]
    # fixed n=3, default bonus=1, factor 3: (0+1+2)*3 + 1*3 = 12
    assert _run_all(engine, ids) == {
        "hourly-20260601T110000Z": 12,
        "hourly-20260601T120000Z": 12,
    }
