"""Queued executions and the worker pool: each execution in its own engine process."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import load_config
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine, ExecutionBusyError, WorkerPool, load_object

WF = """
import os, time
from pathlib import Path
from taskfabric import task, workflow, map_task

LOG = Path(os.environ["WORKER_LOG"])

@task
def items(n: int) -> list[int]:
    return list(range(n))

@task
def step(x: int) -> int:
    with LOG.open("a") as fh:
        fh.write(f"{x}\\n")
    time.sleep(float(os.environ.get("STEP_SECONDS", "0.01")))
    return x + 1

@task
def total(xs: list[int]) -> int:
    return sum(xs)

@workflow
def wf(n: int) -> int:
    return total(xs=map_task(step, concurrency=2)(x=items(n=n)))
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "queued_wf.py"
    path.write_text(textwrap.dedent(WF))
    log = tmp_path / "steps.log"
    monkeypatch.setenv("WORKER_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    sys.modules.pop("queued_wf", None)
    wf, code = load_object(f"{path}:wf")
    engine = Engine(load_config())
    yield engine, wf, code, log
    engine.close()
    sys.modules.pop("queued_wf", None)


def _inputs(n: int) -> types_pb2.LiteralMap:
    m = types_pb2.LiteralMap()
    m.literals["n"].integer = n
    return m


def _wait(
    engine: Engine, pool: WorkerPool, execution_id: str, phases: set[str], timeout: float = 60
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pool.step()
        rec = engine.metadata.get_execution(execution_id)
        assert rec is not None
        if rec.phase in phases:
            return rec.phase
        time.sleep(0.1)
    raise AssertionError(f"execution {execution_id} did not reach {phases}")


def test_enqueue_is_idempotent_and_a_worker_runs_it(setup: Any) -> None:
    engine, wf, code, _ = setup
    rec = engine.enqueue(
        wf.compile(), _inputs(4), project="p", domain="d", name="nightly-1", code=code
    )
    again = engine.enqueue(
        wf.compile(), _inputs(4), project="p", domain="d", name="nightly-1", code=code
    )
    assert again.id == rec.id and rec.phase == "QUEUED"
    pool = WorkerPool(engine.config, workers=2, poll_seconds=0.1)
    try:
        assert _wait(engine, pool, rec.id, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"
    finally:
        pool.shutdown()
    out = engine.read_literals(engine.metadata.get_execution(rec.id).outputs_uri)  # type: ignore[union-attr]
    assert out is not None and out.literals["o0"].integer == 10


def test_a_killed_execution_process_is_replaced_and_finishes(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, wf, code, log = setup
    monkeypatch.setenv("STEP_SECONDS", "0.3")
    rec = engine.enqueue(wf.compile(), _inputs(10), project="p", domain="d", name="big", code=code)
    pool = WorkerPool(engine.config, workers=1, poll_seconds=0.1)
    try:
        pool.step()
        deadline = time.monotonic() + 30
        while not log.exists() or len(log.read_text().split()) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = pool.children[rec.id]
        os.kill(child.proc.pid, signal.SIGKILL)
        child.proc.wait()
        ran_before = log.read_text().split()
        done = {
            n.node_id
            for n in engine.metadata.nodes(rec.id)
            if n.kind == "map_item" and n.phase == "SUCCEEDED"
        }
        monkeypatch.setenv("STEP_SECONDS", "0.01")
        assert _wait(engine, pool, rec.id, {"SUCCEEDED", "FAILED"}) == "SUCCEEDED"
    finally:
        pool.shutdown()
    ran_after = [int(x) for x in log.read_text().split()[len(ran_before) :]]
    done_items = {int(n[3:-1]) for n in done}
    assert sorted(ran_after) == sorted(set(range(10)) - done_items)


def test_sigterm_leaves_the_execution_for_the_next_engine(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, wf, code, log = setup
    monkeypatch.setenv("STEP_SECONDS", "0.3")
    rec = engine.enqueue(wf.compile(), _inputs(6), project="p", domain="d", name="stop", code=code)
    pool = WorkerPool(engine.config, workers=1, poll_seconds=0.1)
    try:
        pool.step()
        deadline = time.monotonic() + 30
        while not log.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child = pool.children[rec.id]
        child.proc.send_signal(signal.SIGTERM)
        assert child.proc.wait(timeout=30) == 130
        stopped = engine.metadata.get_execution(rec.id)
        assert stopped is not None and stopped.phase == "RUNNING" and stopped.owner == ""
        monkeypatch.setenv("STEP_SECONDS", "0.01")
        assert _wait(engine, pool, rec.id, {"SUCCEEDED", "FAILED", "ABORTED"}) == "SUCCEEDED"
    finally:
        pool.shutdown()


def test_cancel_a_queued_and_a_running_execution(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, wf, code, log = setup
    queued = engine.enqueue(wf.compile(), _inputs(3), project="p", domain="d", name="q", code=code)
    assert engine.request_cancel(queued.id) == "ABORTED"
    monkeypatch.setenv("STEP_SECONDS", "0.5")
    rec = engine.enqueue(wf.compile(), _inputs(20), project="p", domain="d", name="r", code=code)
    pool = WorkerPool(engine.config, workers=2, poll_seconds=0.1)
    try:
        pool.step()
        deadline = time.monotonic() + 30
        while not log.exists():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert engine.request_cancel(rec.id, "enough") == "RUNNING"
        assert _wait(engine, pool, rec.id, {"ABORTED", "SUCCEEDED", "FAILED"}, 15) == "ABORTED"
        assert queued.id not in pool.children  # the cancelled queued one never started
    finally:
        pool.shutdown()
    done = engine.metadata.get_execution(rec.id)
    assert done is not None and "enough" in (done.error or {}).get("message", "")
    phases = {n.phase for n in engine.metadata.nodes(rec.id)}
    assert "RUNNING" not in phases and "ABORTED" in phases


def test_a_queued_execution_cancelled_while_a_worker_prepares_it_is_not_run(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The console's viewer test saw it: a worker read the execution QUEUED, the user
    cancelled it (QUEUED -> ABORTED) while the worker loaded its code, and the worker then
    ran it anyway, overwriting ABORTED with RUNNING."""
    engine, wf, code, log = setup
    rec = engine.enqueue(wf.compile(), _inputs(3), project="p", domain="d", name="c", code=code)
    real = engine.load_compiled

    def load_then_cancel(r: Any) -> Any:
        loaded = real(r)
        assert engine.request_cancel(r.id, "changed my mind") == "ABORTED"
        return loaded

    monkeypatch.setattr(engine, "load_compiled", load_then_cancel)
    with pytest.raises(ExecutionBusyError, match="turned ABORTED while this process prepared"):
        engine.resume(rec.id, runnable_only=True)
    monkeypatch.setattr(engine, "load_compiled", real)
    after = engine.metadata.get_execution(rec.id)
    assert after is not None and after.phase == "ABORTED" and after.owner == ""
    # A worker that finds it ABORTED already leaves it alone too.
    with pytest.raises(ExecutionBusyError, match="is ABORTED: nothing to run"):
        engine.resume(rec.id, runnable_only=True)
    assert not log.exists()  # no task ran


def test_a_cancel_dated_before_the_claim_but_written_after_it_still_aborts(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server read its clock, then a worker claimed the execution (QUEUED -> RUNNING in
    the claim), then the server wrote its request: the engine must still see it."""
    engine, wf, code, log = setup
    rec = engine.enqueue(wf.compile(), _inputs(3), project="p", domain="d", name="c", code=code)
    real = engine.pools.release_execution  # called by resume right after its claim
    phases: list[str] = []

    def claimed_then_cancel(execution_id: str) -> None:
        real(execution_id)
        early = time.time() - 30  # the server's clock reading, taken before the claim
        phases.append(engine.metadata.request_cancel(execution_id, "too late?", now=early))

    monkeypatch.setattr(engine.pools, "release_execution", claimed_then_cancel)
    result = engine.resume(rec.id, runnable_only=True)
    assert phases == ["RUNNING"]  # the claim made it RUNNING: the request went to the engine
    assert result.phase == "ABORTED"
    assert "too late?" in (engine.metadata.get_execution(rec.id).error or {}).get("message", "")  # type: ignore[union-attr]


def test_running_owners_of_a_host_are_read_by_its_exact_name(tmp_path: Path) -> None:
    """A worker's dead-owner scan reads (id, owner) of the RUNNING executions of its own
    host: `_` and `%` in a host name match only themselves, a host that merely starts
    with the name is another host."""
    from taskfabric.metadata import ExecutionRecord, MetadataStore

    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    owners = {"a": "web_1:10", "b": "web_1:11", "c": "webx1:12", "d": "web_10:13", "e": ""}
    for i, owner in owners.items():
        phase = "RUNNING" if i != "b" else "SUCCEEDED"
        rec = ExecutionRecord(i, "p", "d", i, "wf", phase=phase, created_at=1.0, owner=owner)
        store.create_execution(rec)
    try:
        assert store.running_owners("web_1") == [("a", "web_1:10")]
        assert store.running_owners("web%") == []
    finally:
        store.close()


def test_an_execution_that_cannot_start_is_held_back_not_spun_on(tmp_path: Path) -> None:
    """An execution whose run fails before it starts (its documents unreadable, say) stays
    queued, and the worker does not take it again at once (each try ends at once, so it
    would take it again and again); it does once its time has come."""
    from taskfabric.config import Config, StorageConfig
    from taskfabric.engine import ExecutionWorker
    from taskfabric.metadata import ExecutionRecord

    worker = ExecutionWorker(Config(storage=StorageConfig(data_root=tmp_path)), slots=2)
    try:
        metadata = worker.engine.metadata
        metadata.create_execution(
            ExecutionRecord("bad", "p", "d", "bad", "wf", phase="QUEUED", created_at=1.0)
        )
        tried: list[str] = []

        def run_claimed(rec: ExecutionRecord, **_: Any) -> Any:
            tried.append(rec.id)
            raise RuntimeError("the workflow document is gone")

        worker.engine.run_claimed = run_claimed  # type: ignore[method-assign]
        assert worker.step() == 1
        worker.running["bad"].join()
        assert worker.step() == 0  # held back
        assert tried == ["bad"]
        found = metadata.get_execution("bad")
        assert found is not None and found.phase == "QUEUED"
        worker._not_before["bad"] = time.monotonic() - 1  # its time has come
        assert worker.step() == 1
        worker.running["bad"].join()
        assert tried == ["bad", "bad"]
    finally:
        worker.engine.close()


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_queued_executions_are_claimed_once_oldest_first(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """`claim_queued`, what each engine process of a server calls to take work: two stores
    (as two processes) claiming at once never get the same execution, every queued one is
    taken, oldest first, RUNNING under its claimant with a 'started by' event; one with node
    rows (a recovered one) is not fresh, and `unclaim` puts one back in the queue."""
    import threading

    from taskfabric.metadata import Batch, ExecutionRecord, MetadataStore, NodeRecord

    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("postgres_schema")("claims")
    stores = [MetadataStore(url), MetadataStore(url)]
    try:
        first = stores[0]
        first.create_execution(
            ExecutionRecord("old", "p", "d", "old", "wf", "QUEUED", created_at=0.5)
        )
        first.create_execution(ExecutionRecord("done", "p", "d", "done", "wf", "SUCCEEDED", 0.1))
        batch = Batch()
        batch.node(NodeRecord("old", "n0", "task", "SUCCEEDED"))
        first.apply(batch)
        ids = [f"e{i:03d}" for i in range(60)]
        for i, execution_id in enumerate(ids):
            first.create_execution(
                ExecutionRecord(
                    execution_id, "p", "d", execution_id, "wf", "QUEUED", created_at=1.0 + i
                )
            )
        (old, fresh), *_ = first.claim_queued("w:1", now=5.0, limit=1, skip=["none"])
        assert (old.id, old.phase, old.owner, old.started_at, fresh) == (
            "old",
            "RUNNING",
            "w:1",
            5.0,
            False,
        )
        # (n0's success is its row, read as an event too)
        assert [e.message for e in first.events("old") if not e.node_id] == ["started by w:1"]
        assert first.unclaim("old", "w:2", now=6.0, message="not mine") is False
        assert first.unclaim("old", "w:1", now=6.0, message="could not start") is True
        back = first.get_execution("old")
        assert back is not None and (back.phase, back.owner) == ("QUEUED", "")
        assert [r.id for r, _ in first.claim_queued("w:1", now=7.0, limit=2, skip={"old"})] == [
            "e000",
            "e001",
        ]
        taken: list[list[str]] = [[], []]

        def claim(k: int) -> None:
            while found := stores[k].claim_queued(f"w:{k}", now=8.0, limit=3, skip={"old"}):
                assert all(fresh for _, fresh in found)
                taken[k] += [r.id for r, _ in found]

        threads = [threading.Thread(target=claim, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not set(taken[0]) & set(taken[1])
        assert sorted(taken[0] + taken[1]) == ids[2:]
        for k in (0, 1):
            assert taken[k] == sorted(taken[k])  # oldest first
            for execution_id in taken[k][:3]:
                rec = first.get_execution(execution_id)
                assert rec is not None and (rec.phase, rec.owner) == ("RUNNING", f"w:{k}")
        # "old" was back in the queue: taken now; then nothing is left
        assert [r.id for r, _ in first.claim_queued("w:1", now=9.0, limit=5)] == ["old"]
        assert first.claim_queued("w:1", now=9.0, limit=5) == []
    finally:
        for store in stores:
            store.close()


def test_a_database_out_of_reach_mid_run_leaves_the_execution_to_be_resumed(
    setup: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found with two servers on one PostgreSQL (issue 21): when its connections ran out
    ("remaining connection slots are reserved"), an engine's read failed mid-run and the
    execution was ABORTED, a user's work lost to a passing outage. It is left RUNNING with no
    owner instead, as on SIGTERM, and the next engine resumes it."""
    import sqlalchemy as sa

    from taskfabric.engine import EngineShutdown

    engine, wf, code, log = setup
    rec = engine.enqueue(wf.compile(), _inputs(3), project="p", domain="d", name="o", code=code)
    real = engine.metadata.cancel_requested  # read by the run's loop while it runs
    calls: list[int] = []

    def out_of_reach(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError(
                "SELECT ...", {}, Exception("remaining connection slots are reserved")
            )
        return real(*args, **kwargs)

    monkeypatch.setattr(engine.metadata, "cancel_requested", out_of_reach)
    with pytest.raises(EngineShutdown):
        engine.resume(rec.id, runnable_only=True)
    left = engine.metadata.get_execution(rec.id)
    assert left is not None and (left.phase, left.owner, left.error) == ("RUNNING", "", None)
    result = engine.resume(rec.id, runnable_only=True)
    assert result.phase == "SUCCEEDED"
    out = engine.read_literals(engine.metadata.get_execution(rec.id).outputs_uri)  # type: ignore[union-attr]
    assert out is not None and out.literals["o0"].integer == 6
