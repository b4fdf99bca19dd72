"""Migration 0011: on SQLite, node_executions and node_attempts are stored in their primary
key's b-tree (WITHOUT ROWID), so a chain link's commit writes a page of five b-trees, not
seven; upgrading keeps every row, downgrading gives the rowid tables back, and a failed
upgrade leaves the tables as they were."""

from __future__ import annotations

import sqlite3
import struct
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import taskfabric.metadata._store as store_module
from taskfabric.metadata import (
    HEAD_REVISION,
    AttemptRecord,
    Batch,
    EventRecord,
    ExecutionRecord,
    MetadataStore,
    NodeRecord,
    _lite,
)

TABLES = ("node_executions", "node_attempts")


def _config(conn: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(store_module.__file__).parent / "migrations"))
    cfg.attributes["connection"] = conn
    return cfg


def _at_0010_with_rows(url: str) -> None:
    """A database at 0010 holding an execution's node and attempt."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        command.upgrade(_config(conn), "0010")
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, project, domain, name, workflow_name, phase, "
                "created_at) VALUES ('e0', 'p', 'd', 'e0', 'wf', 'RUNNING', 1)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO node_executions (execution_id, node_id, kind, phase, outputs_uri) "
                "VALUES ('e0', 'n0', 'task', 'SUCCEEDED', 'file:///o#0+1')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO node_attempts (execution_id, node_id, attempt, phase, handle) "
                "VALUES ('e0', 'n0', 1, 'SUCCEEDED', 'process:h:1:2')"
            )
        )
    engine.dispose()


def _schema(path: Path) -> dict[str, str]:
    conn = sqlite3.connect(path)
    try:
        return {
            str(name): str(sql)
            for name, sql in conn.execute(
                "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            )
        }
    finally:
        conn.close()


def _without_rowid(schema: dict[str, str]) -> dict[str, bool]:
    return {t: schema[t].rstrip().upper().endswith("WITHOUT ROWID") for t in TABLES}


def test_a_new_database_keeps_node_and_attempt_rows_in_their_keys_btree(
    tmp_path: Path,
) -> None:
    MetadataStore(f"sqlite:///{tmp_path / 'new.db'}").close()
    schema = _schema(tmp_path / "new.db")
    assert _without_rowid(schema) == {"node_executions": True, "node_attempts": True}
    assert "ix_node_executions_kind" in schema
    assert not [name for name in schema if name.startswith("_old_")]


def _link(execution_id: str, i: int) -> Batch:
    """What a chain link commits: a node's end and its successor's start."""
    now = time.time()
    batch = Batch()
    for node, phase in ((f"n{i}", "SUCCEEDED"), (f"n{i + 1}", "RUNNING")):
        batch.node(NodeRecord(execution_id, node, "task", phase, name="inc", started_at=now))
        batch.attempt(AttemptRecord(execution_id, node, 1, phase, started_at=now))
        batch.event(EventRecord(execution_id, node, 1, phase, now, ""))
    return batch


def _btrees_written(path: Path, wal: bytes) -> set[str]:
    """The b-trees whose pages the WAL's frames hold (page 1, the header, aside)."""
    conn = sqlite3.connect(path)
    try:
        names = {
            int(page): str(name) for name, page in conn.execute("SELECT name, pageno FROM dbstat")
        }
    finally:
        conn.close()
    size = struct.unpack(">I", wal[8:12])[0]
    pages = {
        struct.unpack(">I", wal[at : at + 4])[0]
        for at in range(32, len(wal) - size - 23, size + 24)
    }
    return {names[p] for p in pages if p != 1}


def test_a_chain_links_commit_writes_a_page_of_five_btrees(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each b-tree a commit touches is a page written to the WAL: the node and attempt rows'
    tables, the events and their index, and the nodes' index by kind. (Before 0011, also the
    indexes of the two tables' keys.)"""
    monkeypatch.setattr(_lite, "CHECKPOINT_EVERY", 10**9)  # the frames stay in the WAL
    path = tmp_path / "m.db"
    store = MetadataStore(f"sqlite:///{path}")
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
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL from here on: the links alone
    conn.close()
    for i in range(20):
        store.apply(_link("e1", i))
    wal = path.with_name(path.name + "-wal").read_bytes()
    store.close()
    assert _btrees_written(path, wal) == {
        "node_executions",
        "node_attempts",
        "events",
        "ix_events_execution",
        "ix_node_executions_kind",
    }


def test_the_upgrade_keeps_the_rows_and_their_cascade(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _at_0010_with_rows(f"sqlite:///{path}")
    assert _without_rowid(_schema(path)) == {"node_executions": False, "node_attempts": False}
    store = MetadataStore(f"sqlite:///{path}")
    assert store.current_revision() == HEAD_REVISION
    ((node,), (attempt,)) = store.nodes("e0"), store.attempts("e0")
    assert (node.phase, node.outputs_uri) == ("SUCCEEDED", "file:///o#0+1")
    assert (attempt.phase, attempt.handle) == ("SUCCEEDED", "process:h:1:2")
    store.close()
    schema = _schema(path)
    assert _without_rowid(schema) == {"node_executions": True, "node_attempts": True}
    assert "ix_node_executions_kind" in schema
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys=ON")
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.execute("DELETE FROM executions")
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES]
    assert counts == [0, 0]  # ON DELETE CASCADE, through both tables, as before
    conn.close()


def test_the_upgrade_leaves_out_rows_whose_execution_is_gone(tmp_path: Path) -> None:
    """An execution deleted with the foreign keys off (the sqlite3 shell's default) left its
    rows: nothing reads them, and the copy skips them instead of failing on them."""
    path = tmp_path / "old.db"
    _at_0010_with_rows(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    conn.execute("DELETE FROM executions")  # foreign keys off: node and attempt stay
    conn.commit()
    conn.close()
    store = MetadataStore(f"sqlite:///{path}")
    assert store.current_revision() == HEAD_REVISION
    assert (store.nodes("e0"), store.attempts("e0")) == ([], [])
    store.close()


def test_a_failed_upgrade_leaves_the_tables_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _at_0010_with_rows(f"sqlite:///{path}")
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE _old_node_attempts (x)")  # the second rename fails on it
    conn.commit()
    conn.close()
    with pytest.raises(sa.exc.OperationalError, match="_old_node_attempts"):
        MetadataStore(f"sqlite:///{path}")
    schema = _schema(path)
    assert _without_rowid(schema) == {"node_executions": False, "node_attempts": False}
    assert "_old_node_executions" not in schema
    assert "ix_node_executions_kind" in schema
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0010",)]
    assert conn.execute("SELECT handle FROM node_attempts").fetchall() == [("process:h:1:2",)]
    conn.close()


def test_the_downgrade_gives_the_rowid_tables_back(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _at_0010_with_rows(f"sqlite:///{path}")
    MetadataStore(f"sqlite:///{path}").close()
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        command.downgrade(_config(conn), "0010")
    engine.dispose()
    schema = _schema(path)
    assert _without_rowid(schema) == {"node_executions": False, "node_attempts": False}
    assert "ix_node_executions_kind" in schema
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT node_id, phase FROM node_executions").fetchall() == [
        ("n0", "SUCCEEDED")
    ]
    assert conn.execute("SELECT handle FROM node_attempts").fetchall() == [("process:h:1:2",)]
    conn.close()
