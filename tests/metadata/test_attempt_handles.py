"""Attempt handles (re-attach) in the metadata store, on SQLite and PostgreSQL: written at once
from any thread, before or after the loop's own rows, and never overwritten by them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig

from taskfabric.metadata import (
    AttemptRecord,
    Batch,
    ExecutionRecord,
    MetadataStore,
    NodeRecord,
)
from taskfabric.metadata import _store as store_module


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        make: Callable[[str], str] = request.getfixturevalue("postgres_schema")
        url = make("handles")
    store = MetadataStore(url)
    store.create_execution(
        ExecutionRecord(
            id="e1",
            project="p",
            domain="d",
            name="e1",
            workflow_name="wf",
            phase="RUNNING",
            created_at=time.time(),
        )
    )
    yield store
    store.close()


def _rows(execution: str = "e1") -> tuple[NodeRecord, AttemptRecord]:
    node = NodeRecord(execution, "n0", "task", "RUNNING", name="t", attempts=1, started_at=1.0)
    attempt = AttemptRecord(execution, "n0", 1, "RUNNING", started_at=2.0, backend="procs")
    return node, attempt


def test_a_handle_recorded_before_the_loop_wrote_its_rows_survives_them(
    store: MetadataStore,
) -> None:
    node, attempt = _rows()
    attempt.handle = "process:boot:42:1000"
    # From another thread, before the loop committed the node and attempt rows.
    worker = threading.Thread(target=store.record_attempt_handle, args=(node, attempt))
    worker.start()
    worker.join()
    (got,) = store.attempts("e1")
    assert (got.phase, got.handle) == ("RUNNING", "process:boot:42:1000")
    assert [n.node_id for n in store.nodes("e1")] == ["n0"]
    # The loop's writes (which carry no handle) complete the rows and keep the handle.
    batch = Batch()
    node.phase = "SUCCEEDED"
    batch.node(node)
    batch.attempt(AttemptRecord("e1", "n0", 1, "SUCCEEDED", started_at=2.0, finished_at=3.0))
    store.apply(batch)
    (got,) = store.attempts("e1")
    assert (got.phase, got.finished_at, got.handle) == ("SUCCEEDED", 3.0, "process:boot:42:1000")
    assert store.nodes("e1")[0].phase == "SUCCEEDED"


def test_a_handle_recorded_after_the_rows_changes_only_the_handle(store: MetadataStore) -> None:
    node, attempt = _rows()
    batch = Batch()
    batch.node(node)
    batch.attempt(attempt)
    store.apply(batch)
    later = AttemptRecord("e1", "n0", 1, "RUNNING", started_at=99.0, handle="app-1")
    store.record_attempt_handle(NodeRecord("e1", "n0", "task", "QUEUED"), later)
    (got,) = store.attempts("e1")
    assert (got.handle, got.started_at, got.backend) == ("app-1", 2.0, "procs")
    assert store.nodes("e1")[0].phase == "RUNNING"  # the node row is left as it was
    later.handle = "app-2"  # a backend may record a new handle (a resubmitted job)
    store.record_attempt_handle(node, later)
    assert store.attempts("e1")[0].handle == "app-2"


def test_a_handle_in_a_batch_is_written_with_the_attempts_start(store: MetadataStore) -> None:
    """Batch.attempt_handle (the engine's loop committing a handle with the attempt's start):
    one transaction makes the rows and stores the handle; the loop's later writes keep it; a
    handle in a later batch replaces it (a re-attached attempt's row exists already)."""
    node, attempt = _rows()
    batch = Batch()
    batch.node(node)
    batch.attempt(attempt)
    batch.attempt_handle(node, AttemptRecord(**{**vars(attempt), "handle": "process-starting:b"}))
    store.apply(batch)
    (got,) = store.attempts("e1")
    assert (got.phase, got.backend, got.handle) == ("RUNNING", "procs", "process-starting:b")
    ended = Batch()
    ended.attempt(AttemptRecord("e1", "n0", 1, "SUCCEEDED", started_at=2.0, finished_at=3.0))
    store.apply(ended)
    assert store.attempts("e1")[0].handle == "process-starting:b"
    again = Batch()
    again.attempt_handle(
        NodeRecord("e1", "n0", "task", "QUEUED"),
        AttemptRecord("e1", "n0", 1, "RUNNING", handle="process:b:7:1"),
    )
    store.apply(again)
    (got,) = store.attempts("e1")
    assert (got.phase, got.finished_at, got.handle) == ("SUCCEEDED", 3.0, "process:b:7:1")
    assert store.nodes("e1")[0].phase == "RUNNING"  # the node row is left as it was


def test_migration_0007_adds_an_empty_handle_to_existing_attempts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, project, domain, name, workflow_name, phase, "
                "created_at) VALUES ('e0', 'p', 'd', 'e0', 'wf', 'RUNNING', 1)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO node_executions (execution_id, node_id, kind, phase) "
                "VALUES ('e0', 'n0', 'task', 'RUNNING')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO node_attempts (execution_id, node_id, attempt, phase) "
                "VALUES ('e0', 'n0', 1, 'RUNNING')"
            )
        )
    engine.dispose()
    store = MetadataStore(url)  # migrates to the head
    (got,) = store.attempts("e0")
    assert (got.phase, got.handle) == ("RUNNING", "")
    store.close()
