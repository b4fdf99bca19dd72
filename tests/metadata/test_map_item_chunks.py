"""Map items packed in chunk rows (`metadata/_items.py`): what the store's reads materialize
of them, items that also get rows, and items recorded as rows before migration 0010."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from taskfabric.metadata import (
    HEAD_REVISION,
    AttemptRecord,
    Batch,
    EventRecord,
    ExecutionRecord,
    MapItemsQueued,
    MapItemsStopped,
    MetadataStore,
    NodeRecord,
    PriorItem,
)
from taskfabric.metadata._items import CHUNK
from taskfabric.metadata._schema import map_item_chunks, node_attempts, node_executions

PACK = "file:///r/packs/seg.pack"


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_schema")("chunks")
    else:
        url = f"sqlite:///{tmp_path / 'm.db'}"
    found = MetadataStore(url)
    found.create_execution(
        ExecutionRecord(
            id="e", project="p", domain="d", name="e", workflow_name="w", phase="RUNNING",
            created_at=time.time(),
        )
    )  # fmt: skip
    yield found
    found.close()  # its connections (others' tests count a process's connections)


def _item(i: int, phase: str, **values: object) -> NodeRecord:
    return NodeRecord("e", f"n1[{i}]", "map_item", phase, parent_id="n1", **values)  # type: ignore[arg-type]


def test_items_are_packed_and_read_back_as_records(store: MetadataStore) -> None:
    count = 2 * CHUNK + 3
    batch = Batch()
    batch.node(NodeRecord("e", "n1", "map", "RUNNING", name="m"))
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t.inc", count, 100.0))
    store.apply(batch)
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(map_item_chunks)).scalar() == 3
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(node_executions)).scalar() == 1
        )  # the map's own row only
    batch = Batch()
    for i in (0, CHUNK + 1):
        batch.node(_item(i, "RUNNING", attempts=1, started_at=100.0, inputs_uri=f"{PACK}#{i}+9"))
        batch.attempt(
            AttemptRecord("e", f"n1[{i}]", 1, "RUNNING", started_at=101.0, backend="local")
        )
    store.apply(batch)
    batch = Batch()
    batch.node(
        _item(
            0, "SUCCEEDED", attempts=1, started_at=100.0, finished_at=102.0,
            inputs_uri=f"{PACK}#0+9", outputs_uri=f"{PACK}#50+10", cache_status="disabled",
        )
    )  # fmt: skip
    batch.attempt(AttemptRecord("e", "n1[0]", 1, "SUCCEEDED", started_at=101.0, backend="local"))
    batch.node(_item(2, "SUCCEEDED", outputs_uri="s3://bucket/own/outputs.pb", cache_status="hit"))
    store.apply(batch)
    with store.engine.connect() as conn:  # still no row per item, nor per attempt
        assert conn.execute(sa.select(sa.func.count()).select_from(node_executions)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(node_attempts)).scalar() == 0

    items = {n.node_id: n for n in store.nodes("e") if n.kind == "map_item"}
    assert len(items) == count
    first = items["n1[0]"]
    assert (first.name, first.parent_id, first.task_name) == ("m[0]", "n1", "t.inc")
    assert (first.phase, first.attempts, first.started_at, first.finished_at) == (
        "SUCCEEDED", 1, 100.0, 102.0,
    )  # fmt: skip
    assert (first.inputs_uri, first.outputs_uri, first.cache_status) == (
        f"{PACK}#0+9", f"{PACK}#50+10", "disabled",
    )  # fmt: skip
    assert items["n1[2]"].outputs_uri == "s3://bucket/own/outputs.pb"
    assert items["n1[2]"].cache_status == "hit"
    assert items[f"n1[{CHUNK + 1}]"].phase == "RUNNING"
    last = items[f"n1[{count - 1}]"]
    assert (last.phase, last.started_at, last.finished_at, last.attempts) == (
        "QUEUED", 100.0, None, 0,
    )  # fmt: skip
    assert store.node("e", "n1[0]") == first
    assert store.node("e", f"n1[{count}]") is None

    attempts = store.attempts("e")
    assert [(a.node_id, a.attempt, a.phase, a.backend) for a in attempts] == [
        ("n1[0]", 1, "SUCCEEDED", "local"),
        (f"n1[{CHUNK + 1}]", 1, "RUNNING", "local"),
    ]
    assert attempts[0].started_at == 101.0 and attempts[0].finished_at == 102.0
    assert [a.node_id for a in store.attempts("e", phase="RUNNING")] == [f"n1[{CHUNK + 1}]"]
    assert [a.attempt for a in store.attempts("e", "n1[0]")] == [1]
    assert store.item_counts("e") == {"n1": {"SUCCEEDED": 2, "RUNNING": 1, "QUEUED": count - 3}}
    page = store.item_page("e", "n1", phases=["QUEUED"], after="n1[60]", limit=3)
    assert page is not None and [n.node_id for n in page] == ["n1[61]", "n1[62]", "n1[63]"]
    assert sorted(store.prior_items("e")) == [
        PriorItem("n1[0]", "SUCCEEDED", 1, f"{PACK}#50+10"),
        PriorItem("n1[2]", "SUCCEEDED", 0, "s3://bucket/own/outputs.pb"),
        PriorItem(f"n1[{CHUNK + 1}]", "RUNNING", 1, ""),
    ]

    stop = Batch()
    stop.stop_items(MapItemsStopped("e", "n1", "ABORTED", 110.0, "cancelled"))
    store.apply(stop)
    counts = store.item_counts("e")["n1"]
    assert counts == {"SUCCEEDED": 2, "RUNNING": 1, "ABORTED": count - 3}
    aborted = store.node("e", "n1[5]")
    assert aborted is not None and (aborted.finished_at, aborted.message) == (110.0, "cancelled")


def test_an_item_with_an_error_or_a_retry_keeps_rows_from_then_on(store: MetadataStore) -> None:
    batch = Batch()
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t", 4, 100.0))
    batch.node(_item(1, "RUNNING", attempts=1))
    batch.attempt(AttemptRecord("e", "n1[1]", 1, "RUNNING"))
    store.apply(batch)
    error = {"kind": "user", "code": "Boom", "message": "no"}
    batch = Batch()
    batch.node(_item(1, "RETRYING", attempts=1, error=error, message="retrying"))
    batch.attempt(AttemptRecord("e", "n1[1]", 1, "FAILED", error=error))
    store.apply(batch)
    retrying = store.node("e", "n1[1]")
    assert retrying is not None
    assert (retrying.phase, retrying.error, retrying.message) == ("RETRYING", error, "retrying")
    batch = Batch()
    batch.node(_item(1, "SUCCEEDED", attempts=2, outputs_uri=f"{PACK}#7+3"))
    batch.attempt(AttemptRecord("e", "n1[1]", 2, "SUCCEEDED"))
    store.apply(batch)
    done = store.node("e", "n1[1]")
    assert done is not None and (done.phase, done.error, done.message) == ("SUCCEEDED", None, "")
    assert [(a.attempt, a.phase, a.error) for a in store.attempts("e", "n1[1]")] == [
        (1, "FAILED", error),
        (2, "SUCCEEDED", None),
    ]
    assert list(store.prior_items("e")) == [PriorItem("n1[1]", "SUCCEEDED", 2, f"{PACK}#7+3")]


def test_a_handle_gives_an_item_rows_and_a_resume_interrupts_the_rest(
    store: MetadataStore,
) -> None:
    batch = Batch()
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t", 3, 100.0))
    for i in (0, 1):
        batch.node(_item(i, "RUNNING", attempts=1))
        batch.attempt(AttemptRecord("e", f"n1[{i}]", 1, "RUNNING", backend="remote"))
    store.apply(batch)
    store.record_attempt_handle(
        _item(0, "RUNNING", attempts=1), AttemptRecord("e", "n1[0]", 1, "RUNNING", backend="remote")
    )
    with store.engine.begin() as conn:  # the handle itself (record_attempt_handle keeps none
        conn.execute(  # in the record it is given: the attempt's is set by the test here)
            node_attempts.update().where(node_attempts.c.node_id == "n1[0]").values(handle="h-0")
        )
    running = store.attempts("e", phase="RUNNING")
    assert [(a.node_id, a.handle) for a in running] == [("n1[0]", "h-0"), ("n1[1]", "")]
    # what a resume does with them (engine/_handles.left_running): n1[1] interrupted
    from taskfabric.engine._handles import left_running

    batch = Batch()
    reattach = left_running(running, batch, 120.0)
    store.apply(batch)
    assert list(reattach) == ["n1[0]"]
    interrupted = store.attempts("e", "n1[1]")
    assert [(a.phase, (a.error or {}).get("code")) for a in interrupted] == [
        ("FAILED", "Interrupted")
    ]
    assert [a.node_id for a in store.attempts("e", phase="RUNNING")] == ["n1[0]"]
    # the item that ran on succeeds later: its rows follow
    batch = Batch()
    batch.node(_item(0, "SUCCEEDED", attempts=1))
    batch.attempt(AttemptRecord("e", "n1[0]", 1, "SUCCEEDED", backend="remote"))
    store.apply(batch)
    assert store.attempts("e", phase="RUNNING") == []
    # queued again on resume: the item not done (n1[1], n1[2]) QUEUED, the one done kept
    batch = Batch()
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t", 3, 130.0))
    store.apply(batch)
    phases = {n.node_id: (n.phase, n.attempts) for n in store.nodes("e")}
    assert phases == {"n1[0]": ("SUCCEEDED", 1), "n1[1]": ("QUEUED", 1), "n1[2]": ("QUEUED", 0)}


def test_items_recorded_as_rows_before_0010_are_read_and_carried_into_chunks(
    tmp_path: Path,
) -> None:
    """A database at 0009 with a map's items as rows: after the upgrade they read as before,
    and a resume that queues the map again packs them, the ones done kept."""
    from alembic import command
    from alembic.config import Config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    cfg = Config()
    cfg.set_main_option(
        "script_location",
        str(Path(__import__("taskfabric.metadata").metadata.__file__).parent / "migrations"),
    )
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0009")
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, project, domain, name, workflow_name, phase, "
                "created_at) VALUES ('e', 'p', 'd', 'e', 'w', 'RUNNING', 1)"
            )
        )
        for i, phase in enumerate(["SUCCEEDED", "FAILED", "QUEUED"]):
            conn.execute(
                sa.text(
                    "INSERT INTO node_executions (execution_id, node_id, name, kind, parent_id, "
                    "phase, attempts, outputs_uri, error) VALUES ('e', :id, :name, 'map_item', "
                    "'n1', :phase, :attempts, :out, :error)"
                ),
                {
                    "id": f"n1[{i}]",
                    "name": f"m[{i}]",
                    "phase": phase,
                    "attempts": 1 if phase != "QUEUED" else 0,
                    "out": f"{PACK}#{i}+1" if phase == "SUCCEEDED" else "",
                    "error": '{"code": "Boom"}' if phase == "FAILED" else None,
                },
            )
    engine.dispose()
    store = MetadataStore(url)
    assert store.current_revision() == HEAD_REVISION
    before = {n.node_id: n.phase for n in store.nodes("e")}
    assert before == {"n1[0]": "SUCCEEDED", "n1[1]": "FAILED", "n1[2]": "QUEUED"}
    assert store.item_counts("e") == {"n1": {"SUCCEEDED": 1, "FAILED": 1, "QUEUED": 1}}
    assert store.item_page("e", "n1", limit=5) is None  # rows: the console pages them as before
    batch = Batch()
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t", 3, 50.0))
    store.apply(batch)
    after = {n.node_id: (n.phase, n.attempts, n.error) for n in store.nodes("e")}
    assert after == {
        "n1[0]": ("SUCCEEDED", 1, None),
        "n1[1]": ("QUEUED", 1, None),
        "n1[2]": ("QUEUED", 0, None),
    }
    assert sorted(store.prior_items("e")) == [
        PriorItem("n1[0]", "SUCCEEDED", 1, f"{PACK}#0+1"),
        PriorItem("n1[1]", "QUEUED", 1, ""),
    ]
    assert store.item_page("e", "n1", limit=5) is not None
    store.close()


def _running(i: int) -> Batch:
    batch = Batch()
    batch.node(_item(i, "RUNNING", attempts=1, started_at=100.0, inputs_uri=f"{PACK}#{i}+9"))
    return batch


def _phases(store: MetadataStore) -> dict[str, str]:
    return {r.node_id: r.phase for r in store.nodes("e") if r.kind == "map_item"}


def test_the_writer_keeps_its_chunks_decoded_until_another_connection_writes(
    tmp_path: Path,
) -> None:
    """SQLite: a commit takes the chunks the writer wrote last from its `ChunkCache`
    instead of reading them again, unless another connection wrote the database since
    (`PRAGMA data_version`) or the transaction that changed them rolled back."""
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.create_execution(
        ExecutionRecord(
            id="e", project="p", domain="d", name="e", workflow_name="w", phase="RUNNING",
            created_at=time.time(),
        )
    )  # fmt: skip
    lite = store._lite
    assert lite is not None
    reads: list[str] = []
    lite._writer.set_trace_callback(  # type: ignore[union-attr]
        lambda sql: reads.append(sql) if "FROM map_item_chunks" in sql else None
    )
    batch = Batch()
    batch.node(NodeRecord("e", "n1", "map", "RUNNING", name="m"))
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t.inc", CHUNK, 100.0))
    store.apply(batch)
    reads.clear()
    store.apply(_running(0))
    store.apply(_running(1))
    assert reads == []  # the chunk written by the queue, kept
    assert len(lite.chunks) == 1
    # another connection changes the chunk: the next commit reads it again
    other = sqlite3.connect(tmp_path / "m.db")
    with other:
        other.execute("UPDATE map_item_chunks SET message = 'changed elsewhere' WHERE chunk = 0")
    other.close()
    store.apply(_running(2))
    assert len(reads) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(map_item_chunks.c.message)).scalar() == "changed elsewhere"
    # a transaction that fails rolls back its changes to the kept chunks too
    failing = _running(3)  # its event (written after the chunks) names no execution
    failing.event(EventRecord("no-such-execution", "n1[3]", 1, "RUNNING", 1.0, "x"))
    with pytest.raises(sqlite3.IntegrityError):
        store.apply(failing)
    assert len(lite.chunks) == 0  # (kept, n1[3] would be RUNNING in the next commit)
    store.apply(_running(4))
    assert _phases(store)["n1[3]"] == "QUEUED"
    assert _phases(store)["n1[2]"] == _phases(store)["n1[4]"] == "RUNNING"
    store.close()


def test_an_items_own_documents_are_packed_in_place(store: MetadataStore) -> None:
    """A running item's outputs URI (`<execution>/nodes/n1/<index>/outputs.pb`, where
    out-of-process backends write them) is packed as its folder, stored once per chunk,
    not kept whole in `extras`; any other URI still is, and each reads back as written."""
    root = "file:///r/executions/e/nodes/n1"
    batch = Batch()
    batch.node(NodeRecord("e", "n1", "map", "RUNNING", name="m"))
    batch.queue_items(MapItemsQueued("e", "n1", "m", "t.inc", CHUNK + 2, 100.0))
    store.apply(batch)
    written = {
        1: (f"{PACK}#1+9", f"{root}/1/outputs.pb"),
        2: (f"{root}/2/inputs.pb", f"{root}/2/outputs.pb"),
        3: (f"{PACK}#3+9", f"{root}/7/outputs.pb"),  # not its own: kept whole
        CHUNK + 1: (f"{PACK}#9+9", f"{root}/{CHUNK + 1}/outputs.pb"),
    }
    batch = Batch()
    for i, (inputs_uri, outputs_uri) in written.items():
        batch.node(_item(i, "RUNNING", attempts=1, inputs_uri=inputs_uri, outputs_uri=outputs_uri))
    store.apply(batch)
    by_id = {r.node_id: r for r in store.nodes("e")}
    for i, (inputs_uri, outputs_uri) in written.items():
        assert (by_id[f"n1[{i}]"].inputs_uri, by_id[f"n1[{i}]"].outputs_uri) == (
            inputs_uri,
            outputs_uri,
        )
    with store.engine.connect() as conn:
        query = sa.select(map_item_chunks.c.chunk, map_item_chunks.c.extras)
        extras = {int(c): str(x) for c, x in conn.execute(query)}
    assert extras[1] == "{}"
    assert list(json.loads(extras[0])) == ["3"]


def test_an_item_is_packed_from_its_latest_records(store: MetadataStore) -> None:
    """The writer remembers, within a transaction, where each item's records go (its node's
    record and its attempt's look it up once), and, across them, how each item's inputs URI
    was packed (its start and its end both give it): an item whose inputs changed between
    two commits, and the same node id in two executions in one batch, are each packed from
    their own records."""
    store.create_execution(
        ExecutionRecord(
            id="f", project="p", domain="d", name="f", workflow_name="w", phase="RUNNING",
            created_at=time.time(),
        )
    )  # fmt: skip
    batch = Batch()
    for execution_id in ("e", "f"):
        batch.node(NodeRecord(execution_id, "n1", "map", "RUNNING", name="m"))
        batch.queue_items(MapItemsQueued(execution_id, "n1", "m", "t.inc", 4, 100.0))
    store.apply(batch)
    batch = Batch()
    for execution_id, offset in (("e", 10), ("f", 20)):
        batch.node(
            NodeRecord(
                execution_id, "n1[1]", "map_item", "RUNNING", parent_id="n1", attempts=1,
                inputs_uri=f"{PACK}#{offset}+9",
            )
        )  # fmt: skip
        batch.attempt(AttemptRecord(execution_id, "n1[1]", 1, "RUNNING", started_at=float(offset)))
    store.apply(batch)
    batch = Batch()
    batch.node(_item(1, "SUCCEEDED", attempts=1, inputs_uri=f"{PACK}#30+9"))
    batch.attempt(AttemptRecord("e", "n1[1]", 1, "SUCCEEDED", started_at=10.0))
    store.apply(batch)
    nodes = {e: {r.node_id: r for r in store.nodes(e)}["n1[1]"] for e in ("e", "f")}
    assert (nodes["e"].phase, nodes["e"].inputs_uri) == ("SUCCEEDED", f"{PACK}#30+9")
    assert (nodes["f"].phase, nodes["f"].inputs_uri) == ("RUNNING", f"{PACK}#20+9")
    attempts = {
        (a.execution_id, a.phase, a.started_at) for e in ("e", "f") for a in store.attempts(e)
    }
    assert attempts == {("e", "SUCCEEDED", 10.0), ("f", "RUNNING", 20.0)}
