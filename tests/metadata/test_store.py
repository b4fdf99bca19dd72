"""The metadata store on SQLite and PostgreSQL: migrations, batches, reads."""

from __future__ import annotations

import re
import time
from pathlib import Path

import sqlalchemy as sa

from taskfabric.metadata import (
    HEAD_REVISION,
    AttemptRecord,
    Batch,
    EventRecord,
    ExecutionRecord,
    MetadataStore,
    NodeRecord,
)

VERSIONS = (
    Path(__file__).resolve().parents[2]
    / "core"
    / "src"
    / "taskfabric"
    / "metadata"
    / "migrations"
    / "versions"
)


def test_head_revision_is_the_newest_migration() -> None:
    revisions = {}
    for f in VERSIONS.glob("*.py"):
        text = f.read_text()
        rev = re.search(r'^revision = "(\w+)"', text, re.M)
        down = re.search(r"^down_revision = (None|\"\w+\")", text, re.M)
        if rev and down:
            revisions[rev.group(1)] = down.group(1).strip('"')
    heads = set(revisions) - set(revisions.values())
    assert heads == {HEAD_REVISION}


def _store(url: str) -> MetadataStore:
    return MetadataStore(url)


def _roundtrip(store: MetadataStore, suffix: str) -> None:
    now = time.time()
    rec = ExecutionRecord(
        id=f"ex{suffix}",
        project="p",
        domain="d",
        name=f"n{suffix}",
        workflow_name="wf",
        phase="RUNNING",
        created_at=now,
        code={"file": "/x.py", "object": "wf"},
    )
    store.create_execution(rec)
    batch = Batch()
    node = NodeRecord(rec.id, "n0", "task", "RUNNING", name="t", attempts=1)
    batch.node(node)
    batch.attempt(AttemptRecord(rec.id, "n0", 1, "RUNNING", started_at=now))
    batch.event(EventRecord(rec.id, "n0", 1, "RUNNING", now))
    store.apply(batch)
    # a second batch updates the same rows in place (upsert)
    batch = Batch()
    node.phase, node.outputs_uri = "SUCCEEDED", "file:///o.pb"
    batch.node(node)
    batch.attempt(
        AttemptRecord(rec.id, "n0", 1, "SUCCEEDED", started_at=now, finished_at=now + 1, error=None)
    )
    batch.event(EventRecord(rec.id, "n0", 1, "SUCCEEDED", now + 1))
    batch.update_execution(
        rec.id, phase="SUCCEEDED", finished_at=now + 1, error={"code": "x", "message": "y"}
    )
    store.apply(batch)
    got = store.get_execution(rec.id)
    assert (
        got is not None
        and got.phase == "SUCCEEDED"
        and got.code == {"file": "/x.py", "object": "wf"}
    )
    assert got.error == {"code": "x", "message": "y"}
    nodes = store.nodes(rec.id)
    assert len(nodes) == 1 and nodes[0].phase == "SUCCEEDED"
    assert nodes[0].outputs_uri == "file:///o.pb"
    assert [a.phase for a in store.attempts(rec.id)] == ["SUCCEEDED"]
    assert [e.phase for e in store.events(rec.id)] == ["RUNNING", "SUCCEEDED"]
    assert [r.id for r in store.find_executions(f"ex{suffix}"[:4])][:1]
    assert store.list_executions(phases=["SUCCEEDED"], project="p")[0].id == rec.id


def test_sqlite_roundtrip(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'm.db'}")
    assert store.current_revision() == HEAD_REVISION
    _roundtrip(store, "a")
    # opening again does not migrate again
    again = _store(f"sqlite:///{tmp_path / 'm.db'}")
    assert again.get_execution("exa") is not None


def test_claim_is_exclusive(tmp_path: Path) -> None:
    store = _store(f"sqlite:///{tmp_path / 'm.db'}")
    now = time.time()
    store.create_execution(
        ExecutionRecord(
            id="e",
            project="p",
            domain="d",
            name="e",
            workflow_name="w",
            phase="RUNNING",
            created_at=now,
            owner="host:1",
            heartbeat_at=now,
        )
    )
    assert not store.claim_execution("e", "host:2", now=now, stale_before=now - 30, force=False)
    assert store.claim_execution("e", "host:2", now=now + 60, stale_before=now + 30, force=False)
    assert store.get_execution("e").owner == "host:2"  # type: ignore[union-attr]


def _reset_postgres(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        # Every table in the database, alembic_version included: also those declared by modules
        # this test does not import (pools, registry, ...), which would survive a drop of
        # taskfabric.metadata._schema.metadata and make the migrations fail.
        tables = sa.MetaData()
        tables.reflect(conn)
        tables.drop_all(conn)
    engine.dispose()


def test_postgres_roundtrip_and_migrations(postgres_url: str) -> None:
    _reset_postgres(postgres_url)
    store = _store(postgres_url)
    assert store.current_revision() == HEAD_REVISION
    _roundtrip(store, str(int(time.time() * 1000)))
    store.close()


def test_engine_runs_on_postgres(postgres_url: str, tmp_path: Path) -> None:
    from taskfabric import task, workflow
    from taskfabric.config import Config, MetadataConfig, StorageConfig
    from taskfabric.engine import Engine

    @task
    def inc(x: int) -> int:
        return x + 1

    @workflow
    def wf(x: int) -> int:
        return inc(x=inc(x=x))

    config = Config(
        storage=StorageConfig(data_root=tmp_path), metadata=MetadataConfig(url=postgres_url)
    )
    with Engine(config) as engine:
        result = engine.launch(wf, {"x": 1})
        assert result.phase == "SUCCEEDED"
        assert result.python_outputs(wf, engine.store) == 3
        nodes = engine.metadata.nodes(result.execution_id)
        assert sorted(n.phase for n in nodes) == ["SUCCEEDED", "SUCCEEDED"]


def test_in_memory_sqlite() -> None:
    # handy for quick experiments: `[metadata] url = "sqlite://"`
    _roundtrip(_store("sqlite://"), "m")
