"""The SQLite run path's writer never checkpoints the WAL inside a commit: every
`CHECKPOINT_EVERY` commits wake a thread of the store's own, which copies the WAL back into
the database file beside the writer. Counted, not timed."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from taskfabric.metadata import Batch, EventRecord, ExecutionRecord, MetadataStore, _lite


def _store(tmp_path: Path) -> MetadataStore:
    store = MetadataStore(f"sqlite:///{tmp_path / 'm.db'}")
    store.create_execution(
        ExecutionRecord(
            id="e",
            project="p",
            domain="d",
            name="e",
            workflow_name="w",
            phase="RUNNING",
            created_at=time.time(),
        )
    )
    return store


def _commit(store: MetadataStore, i: int) -> None:
    batch = Batch()
    batch.event(EventRecord("e", f"n{i}", 1, "RUNNING", time.time(), "x" * 200))
    store.apply(batch)


def test_commits_leave_checkpoints_to_the_checkpoint_thread(tmp_path: Path) -> None:
    store = _store(tmp_path)
    lite = store._lite
    assert lite is not None
    try:
        ran: list[str] = []
        real = lite.checkpointer._run

        def run() -> None:
            ran.append(threading.current_thread().name)
            real()

        lite.checkpointer._run = run  # type: ignore[method-assign]
        for i in range(_lite.CHECKPOINT_EVERY - 2):  # create_execution was one commit
            _commit(store, i)
        assert lite._writer is not None
        assert lite._writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        assert ran == [] and lite.checkpointer.runs == 0  # nothing checkpointed yet
        wal = tmp_path / "m.db-wal"
        grown = wal.stat().st_size
        _commit(store, -1)  # the CHECKPOINT_EVERY-th commit wakes the thread
        assert lite.checkpointer.wait_runs(1, timeout=60)
        assert ran == ["taskfabric-wal-checkpoint"]
        # nothing else wrote or read meanwhile: the whole WAL was copied
        busy, frames, copied = lite.checkpointer.last or (1, 0, -1)
        assert busy == 0 and frames > 0 and copied == frames
        # the database file holds the rows without the WAL: a copy of it alone reads them
        copy = tmp_path / "copy.db"
        copy.write_bytes((tmp_path / "m.db").read_bytes())
        rows = sqlite3.connect(copy).execute("SELECT count(*) FROM events").fetchone()
        assert rows == (_lite.CHECKPOINT_EVERY - 1,)
        # the WAL is written again from its start after a checkpoint, not grown forever
        for i in range(_lite.CHECKPOINT_EVERY):
            _commit(store, 1000 + i)
        assert lite.checkpointer.wait_runs(2, timeout=60)
        assert wal.stat().st_size < 1.5 * grown
    finally:
        store.close()
    assert not any(t.name == "taskfabric-wal-checkpoint" for t in threading.enumerate())


def test_a_long_wal_is_finished_by_the_writer_and_written_again_from_its_start(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """A passive checkpoint beside a writer that keeps committing never copies the whole
    WAL, and SQLite starts the WAL over only after one that did: past `WAL_RESTART_PAGES`
    the writer copies the rest itself, and the WAL stops growing."""
    monkeypatch.setattr(_lite, "WAL_RESTART_PAGES", 1)
    store = _store(tmp_path)
    lite = store._lite
    assert lite is not None
    wal = tmp_path / "m.db-wal"
    try:
        for i in range(_lite.CHECKPOINT_EVERY - 1):  # create_execution was one commit
            _commit(store, i)
        assert lite.checkpointer.wait_runs(1, timeout=60)
        assert lite.checkpointer.last is not None and lite.checkpointer.last[1] >= 1
        assert lite.restarts == 0
        # The next CHECKPOINT_EVERY-th commit finds the WAL past the limit: the writer
        # finishes the checkpoint itself instead of waking the thread.
        for i in range(_lite.CHECKPOINT_EVERY):
            _commit(store, 1000 + i)
        assert lite.restarts == 1 and lite.checkpointer.runs == 1
        grown = wal.stat().st_size
        # everything was copied: the next commits write the WAL from its start again
        for i in range(_lite.CHECKPOINT_EVERY // 2):
            _commit(store, 2000 + i)
        assert wal.stat().st_size == grown
        # and the rows are all there, in the database file alone
        copy = tmp_path / "copy.db"
        lite.checkpointer.close()
        assert lite._writer is not None
        lite._writer.execute("PRAGMA wal_checkpoint(PASSIVE)")
        copy.write_bytes((tmp_path / "m.db").read_bytes())
        rows = sqlite3.connect(copy).execute("SELECT count(*) FROM events").fetchone()
        assert rows == (_lite.CHECKPOINT_EVERY - 1 + _lite.CHECKPOINT_EVERY * 3 // 2,)
    finally:
        store.close()
