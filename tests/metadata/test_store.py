"""The metadata store on SQLite and PostgreSQL: migrations, batches, reads."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
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


def test_the_sqlite_run_path_sql_names_the_tables_columns() -> None:
    # `_lite` writes records field by field: each record must be its table's columns.
    from taskfabric.metadata import _lite
    from taskfabric.metadata import _schema as s

    def columns(table: sa.Table) -> set[str]:
        return {c.name for c in table.columns}

    assert set(_lite.EXECUTION_COLUMNS) == columns(s.executions)
    assert set(_lite.NODE_COLUMNS) == columns(s.node_executions)
    assert set(_lite.ATTEMPT_COLUMNS) == columns(s.node_attempts)
    assert set(_lite.EVENT_COLUMNS) == columns(s.events) - {"id"}


@pytest.mark.parametrize(
    "path", ["/tmp/x.db", "tmp/a%20b/x.db", "tmp/a b+c/x.db", "~/x.db", "tmp/a#b@c/x.db"]
)
def test_the_sqlite_run_path_opens_the_file_sqlalchemy_opens(path: str) -> None:
    from taskfabric.metadata._lite import sqlite_file_of

    url = f"sqlite:///{path}"
    dialect = sa.create_engine(url).dialect
    (filename,), _ = dialect.create_connect_args(sa.make_url(url))
    assert sqlite_file_of(url) == Path(filename)


def test_urls_the_sqlite_run_path_leaves_to_sqlalchemy() -> None:
    from taskfabric.metadata._lite import sqlite_file_of

    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///x.db?timeout=3", "postgresql://h/d"):
        assert sqlite_file_of(url) is None


def _every_row(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = sa.create_engine(url)
    tables = ("executions", "node_executions", "node_attempts", "events", "cache_entries")
    with engine.connect() as conn:
        found = {
            t: sorted(
                (tuple(r) for r in conn.exec_driver_sql(f"SELECT * FROM {t}")),  # noqa: S608
                key=repr,
            )
            for t in tables
        }
        found["cache_reservations"] = sorted(
            tuple(r) for r in conn.exec_driver_sql("SELECT * FROM cache_reservations")
        )
    engine.dispose()
    return found


def test_the_sqlite_run_path_writes_what_sqlalchemy_writes(tmp_path: Path) -> None:
    # A plain SQLite file goes through `_lite` (sqlite3 alone); the same file with a query
    # option goes through SQLAlchemy. The same calls must leave the same rows in both.
    from taskfabric.catalog import CacheEntry
    from taskfabric.metadata import MapItemsQueued, MapItemsStopped

    lite_url = f"sqlite:///{tmp_path / 'lite.db'}"
    sa_url = f"sqlite:///{tmp_path / 'sa.db'}?timeout=30"
    now = 1_700_000_000.0
    listed: dict[str, list[list[str]]] = {}
    for url in (lite_url, sa_url):
        store = _store(url)
        assert (store._lite is not None) == (url == lite_url)
        rec = ExecutionRecord(
            id="e1", project="p", domain="d", name="n", workflow_name="wf", phase="RUNNING",
            created_at=now, code={"file": "/x.py"}, owner="me", heartbeat_at=now,
        )  # fmt: skip
        store.create_execution(rec)
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO cache_reservations VALUES "
                "('k1', 'me', 1.0, 2.0), ('k2', 'x', 1.0, 2.0)"
            )
        batch = Batch()
        batch.queue_items(MapItemsQueued("e1", "n1", "m", "t", 3, now))
        batch.node(NodeRecord("e1", "n1", "map", "RUNNING", name="m", started_at=now))
        batch.node(NodeRecord("e1", "n1[1]", "map_item", "SUCCEEDED", parent_id="n1"))
        batch.attempt(AttemptRecord("e1", "n1[1]", 1, "SUCCEEDED", log_links=[{"a": "b"}]))
        batch.event(EventRecord("e1", "n1[1]", 1, "SUCCEEDED", now, "done"))
        batch.cache_entry(
            CacheEntry("k", "p", "d", "t", "1", "ih", "xh", "file:///o", "e1", "n1[1]", now)
        )
        batch.release_reservation("k1", "me")
        batch.release_reservation("k2", "me")  # not its owner: kept
        store.apply(batch)
        batch = Batch()
        batch.queue_items(MapItemsQueued("e1", "n1", "m", "t", 3, now + 1))  # a resume
        batch.stop_items(MapItemsStopped("e1", "n1", "SKIPPED", now + 2, "upstream failed"))
        batch.attempt(AttemptRecord("e1", "n1[1]", 1, "FAILED", error={"code": "E"}))
        batch.update_execution("e1", phase="FAILED", finished_at=now + 3, error={"code": "E"})
        store.apply(batch)
        assert store.claim_execution("e1", "you", now=now + 90, stale_before=now + 60, force=False)
        assert not store.claim_execution("e1", "me", now=now + 90, stale_before=now, force=False)
        got = store.get_execution("e1")
        assert got is not None and got.owner == "you" and got.error == {"code": "E"}
        assert store.find_by_name("p", "d", "n") == got
        assert store.cancel_requested("e1", 0.0) is None
        second = dataclasses.replace(
            rec, id="e2", name="n2", workflow_name="other", phase="QUEUED", created_at=now + 10
        )
        store.create_execution(second)
        listed[url] = [
            [r.id for r in store.list_executions()],
            [r.id for r in store.list_executions(project="p", domain="d", phases=["FAILED"])],
            [r.id for r in store.list_executions(workflow="th", limit=1)],
            [r.id for r in store.list_executions(project="x")],
            [r.id for r in store.list_executions(limit=1, offset=1)],
        ]
        store.close()
    assert listed[lite_url] == listed[sa_url] == [["e2", "e1"], ["e1"], ["e2"], [], ["e1"]]
    assert _every_row(lite_url) == _every_row(sa_url)
    assert _every_row(lite_url)["cache_reservations"] == [("k2", "x", 1.0, 2.0)]


def test_a_run_on_sqlite_does_not_import_sqlalchemy(tmp_path: Path) -> None:
    # The run path on the default SQLite database goes through sqlite3 alone (start-up time:
    # importing SQLAlchemy was a third of a `taskfabric run`); only a new database, which
    # Alembic creates, needs it.
    import subprocess
    import sys

    from taskfabric.config import Config, StorageConfig
    from taskfabric.engine import Engine

    Engine(Config(storage=StorageConfig(data_root=tmp_path))).close()  # a database made before
    program = f"""
import sys
from taskfabric import task, workflow
from taskfabric.config import Config, StorageConfig
from taskfabric.engine import Engine

@task
def inc(x: int) -> int:
    return x + 1

@workflow
def wf(x: int) -> int:
    return inc(x=inc(x=x))

with Engine(Config(storage=StorageConfig(data_root={str(tmp_path)!r}))) as engine:
    assert engine.launch(wf, {{"x": 1}}).phase == "SUCCEEDED"
    again = engine.launch(wf, {{"x": 2}})
    assert engine.metadata.get_execution(again.execution_id).phase == "SUCCEEDED"
print(sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy"))
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_a_resume_reads_no_map_item_that_never_had_an_attempt(
    tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    from taskfabric.metadata import MapItemsQueued, MapItemsStopped, PriorItem

    if database == "postgres":
        store = _store(request.getfixturevalue("postgres_schema")("prior"))
    else:
        store = _store(f"sqlite:///{tmp_path / 'm.db'}")
    now = time.time()
    rec = ExecutionRecord(
        id="e", project="p", domain="d", name="e", workflow_name="w", phase="RUNNING",
        created_at=now,
    )  # fmt: skip
    store.create_execution(rec)
    batch = Batch()
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t", 5, now))
    batch.queue_items(MapItemsQueued("e", "n2", "k", "t", 2, now))
    batch.node(NodeRecord("e", "n0", "task", "SUCCEEDED", attempts=1))
    batch.node(NodeRecord("e", "n1", "map", "RUNNING"))
    batch.node(
        NodeRecord(
            "e", "n1[0]", "map_item", "SUCCEEDED", parent_id="n1", attempts=1,
            outputs_uri="file:///o.pack#0+3", inputs_uri="file:///i.pack#0+3",
        )
    )  # fmt: skip
    batch.node(NodeRecord("e", "n1[1]", "map_item", "FAILED", parent_id="n1", attempts=2))
    batch.node(NodeRecord("e", "n1[2]", "map_item", "SUCCEEDED", parent_id="n1"))  # cached
    batch.node(NodeRecord("e", "n1[3]", "map_item", "RUNNING", parent_id="n1", attempts=1))
    batch.stop_items(MapItemsStopped("e", "n2", "SKIPPED", now))
    batch.attempt(AttemptRecord("e", "n1[1]", 1, "FAILED"))
    batch.attempt(AttemptRecord("e", "n1[1]", 2, "RUNNING"))
    batch.attempt(AttemptRecord("e", "n1[3]", 1, "RUNNING"))
    store.apply(batch)
    every = {n.node_id for n in store.nodes("e")}
    assert len(every) == 2 + 5 + 2
    # the nodes in full; of the items, only those that succeeded or had an attempt, and of
    # those only what a resume uses (a big map resumed late holds little of each)
    assert {n.node_id for n in store.prior_nodes("e")} == {"n0", "n1"}
    assert sorted(store.prior_items("e", chunk=2)) == [
        PriorItem("n1[0]", "SUCCEEDED", 1, "file:///o.pack#0+3"),
        PriorItem("n1[1]", "FAILED", 2, ""),
        PriorItem("n1[2]", "SUCCEEDED", 0, ""),
        PriorItem("n1[3]", "RUNNING", 1, ""),
    ]
    running = store.attempts("e", phase="RUNNING")
    assert [(a.node_id, a.attempt) for a in running] == [("n1[1]", 2), ("n1[3]", 1)]
    assert len(store.attempts("e")) == 3
