"""The run path's metadata writes and reads on an SQLite file, through `sqlite3` alone.

A `taskfabric run` on the default SQLite database spent a third of its start-up importing
SQLAlchemy (0.2-0.3 s) for a handful of statements. `MetadataStore` sends the calls of a
run (its writes in `apply`, the execution's creation, claim and heartbeat, the cancel check)
here when its URL is a plain SQLite file, and everything else (migrations, listings, the
catalog, pools) to SQLAlchemy, imported on first use.

Same database, same durability: WAL with `synchronous=NORMAL`, `foreign_keys` on, a 30 s busy
timeout, and each call one transaction (`BEGIN IMMEDIATE`: it takes the write lock first, so
it waits for another writer instead of failing on a lock upgrade). The SQL mirrors what
SQLAlchemy compiles for `_schema`'s tables; a test checks the columns against `_schema`.
"""

from __future__ import annotations

import json
import operator
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from taskfabric.metadata._chunk_cache import ChunkCache
from taskfabric.metadata._items import ItemWriter
from taskfabric.metadata._records import AttemptRecord, EventRecord, ExecutionRecord, NodeRecord

_JSON_FIELDS = frozenset({"code", "error", "log_links"})
#: json.dumps(value, separators=(",", ":"), sort_keys=True) without making an encoder per call
_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


def sqlite_file_of(url: str) -> Path | None:
    """The database file of a plain SQLite URL (`sqlite:///path`), else None (another
    database, an in-memory one, a driver or query options: those go through SQLAlchemy)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or "?" in url:
        return None
    # the file SQLAlchemy's pysqlite dialect opens for the URL: unquoted, made absolute
    database = unquote(url[len(prefix) :])
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(os.path.abspath(database))


def integrity_errors() -> tuple[type[Exception], ...]:
    """The errors of a violated constraint (a name taken, a row already there), for an
    `except`: sqlite3's (this module), and SQLAlchemy's and psycopg's (PostgreSQL's run
    path, `_pgrun`) once they are imported (before, no error can be one of theirs)."""
    found: tuple[type[Exception], ...] = (sqlite3.IntegrityError,)
    for module in ("sqlalchemy.exc", "psycopg"):
        errors = sys.modules.get(module)
        if errors is not None:
            found = (*found, errors.IntegrityError)
    return found


def encode(row: dict[str, Any]) -> dict[str, Any]:
    """JSON columns as text (an `error` of None stays NULL)."""
    for key in _JSON_FIELDS & row.keys():
        value = row[key]
        if value is not None or key != "error":
            row[key] = _dumps(value)
    return row


def _decode_row(cls: type[Any], columns: Sequence[str], row: Sequence[Any]) -> Any:
    data = dict(zip(columns, row, strict=True))
    for key in _JSON_FIELDS & data.keys():
        if data[key] is not None:
            data[key] = json.loads(data[key])
    return cls(**data)


def _names(cls: type[Any]) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


def _upsert(table: str, columns: Sequence[str], keys: Sequence[str], kept: Sequence[str]) -> str:
    updated = [c for c in columns if c not in keys and c not in kept]
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in updated)
    )


EXECUTION_COLUMNS = _names(ExecutionRecord)
NODE_COLUMNS = _names(NodeRecord)
ATTEMPT_COLUMNS = _names(AttemptRecord)
EVENT_COLUMNS = _names(EventRecord)
_SELECT_EXECUTION = f"SELECT {', '.join(EXECUTION_COLUMNS)} FROM executions"
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({', '.join(EXECUTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EXECUTION_COLUMNS))})"
)
_UPSERT_NODE = _upsert("node_executions", NODE_COLUMNS, ("execution_id", "node_id"), ())
# The handle is written by the handle statements alone (MetadataStore.record_attempt_handle,
# Batch.attempt_handle).
_UPSERT_ATTEMPT = _upsert(
    "node_attempts", ATTEMPT_COLUMNS, ("execution_id", "node_id", "attempt"), ("handle",)
)
_INSERT_NODE_IF_MISSING = (
    f"INSERT INTO node_executions ({', '.join(NODE_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(NODE_COLUMNS))}) "
    "ON CONFLICT (execution_id, node_id) DO NOTHING"
)
_UPSERT_HANDLE = (
    f"INSERT INTO node_attempts ({', '.join(ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ATTEMPT_COLUMNS))}) "
    "ON CONFLICT (execution_id, node_id, attempt) DO UPDATE SET handle = excluded.handle"
)
_INSERT_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
)


def connect_file(url: str) -> sqlite3.Connection | None:
    """A new connection to the plain SQLite file of `url`, set up as the store's own (WAL,
    autocommit: the caller opens its transactions), or None when `url` is not one
    (`sqlite_file_of`): a reader of its own for the catalog's cache hits."""
    file = sqlite_file_of(url)
    if file is None:
        return None
    file.parent.mkdir(parents=True, exist_ok=True)
    return _connect(file)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection as `_store._sqlite_pragmas` sets SQLAlchemy's up, in autocommit mode (this
    module opens its transactions itself)."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=30000")
    for _ in range(100):  # WAL: see _store._sqlite_pragmas
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                break
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            time.sleep(0.05)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


#: The writer's commits between two checkpoints of the WAL (each commit of the engine's loop
#: adds some 8 pages: about SQLite's own 1,000-page default).
CHECKPOINT_EVERY = 128

#: The WAL's length (pages) from which the writer finishes a checkpoint itself (see
#: `LiteStore._checkpoint_due`): 16,384 pages of 4 KiB, 64 MiB.
WAL_RESTART_PAGES = 16_384


class Checkpointer:
    """Copies the WAL back into the database file (`PRAGMA wal_checkpoint(PASSIVE)`) on a
    thread and a connection of its own, woken every `CHECKPOINT_EVERY` commits of the
    writer, whose connection never checkpoints itself (`wal_autocheckpoint=0`).

    SQLite's automatic checkpoint runs inside the commit that fills the WAL, with an fsync
    of the database file at `synchronous=NORMAL`: on a busy disk that one commit took
    milliseconds, and an engine commits before each attempt it hands over, so a chain of
    tasks waited for it. A passive checkpoint runs beside readers and writers, and what is
    on disk after each commit is as before: the commit in the WAL, not fsynced (a process
    killed loses nothing committed)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._wake = threading.Condition()
        self._due = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        #: checkpoints run, and the last one's (busy, WAL frames, frames checkpointed)
        self.runs = 0
        self.last: tuple[int, int, int] | None = None

    def wake(self) -> None:
        with self._wake:
            if self._stopping:
                return
            self._due = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="taskfabric-wal-checkpoint", daemon=True
                )
                self._thread.start()
            self._wake.notify_all()

    def _run(self) -> None:
        conn = _connect(self.path)
        try:
            while True:
                with self._wake:
                    while not self._due and not self._stopping:
                        self._wake.wait()
                    if self._stopping:
                        return
                    self._due = False
                try:
                    row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                except sqlite3.Error:
                    row = None  # the next wake-up tries again; readers' commits also may
                with self._wake:
                    self.runs += 1
                    self.last = None if row is None else (int(row[0]), int(row[1]), int(row[2]))
                    self._wake.notify_all()
        finally:
            conn.close()

    def wait_runs(self, runs: int, timeout: float) -> bool:
        """Wait until `runs` checkpoints have run (tests)."""
        with self._wake:
            return self._wake.wait_for(lambda: self.runs >= runs, timeout)

    def close(self) -> None:
        with self._wake:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout=30)


class _Transaction:
    """`LiteStore.transaction` (a class, not a generator: a chain of tasks commits once per
    task)."""

    __slots__ = ("_conn", "_store")

    def __init__(self, store: LiteStore, conn: sqlite3.Connection) -> None:
        self._store = store
        self._conn = conn

    def __enter__(self) -> sqlite3.Connection:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        self._store.chunks.begin()
        return conn

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        conn = self._conn
        if kind is None:
            try:
                conn.execute("COMMIT")
            except BaseException:
                self._store.chunks.clear()
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self._store._committed(conn)
        else:
            self._store.chunks.clear()  # changed in place by what is rolled back
            if conn.in_transaction:
                conn.execute("ROLLBACK")


class LiteStore:
    """One SQLite file: a writer connection (callers hold the store's write lock), a
    reader connection (reads take no transaction, so they see the latest commit), and the
    WAL's checkpoints on a thread of their own (`Checkpointer`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()
        self.checkpointer = Checkpointer(path)
        #: the map item chunks the writer wrote last, decoded (`ChunkCache`)
        self.chunks = ChunkCache(self._data_version)
        self._commits = 0
        #: the checkpointer's run whose WAL length made the writer finish a checkpoint
        self._finished_after = -1
        #: checkpoints the writer finished itself (tests)
        self.restarts = 0

    def close(self) -> None:
        self.checkpointer.close()
        with self._read_lock:
            for conn in (self._writer, self._reader):
                if conn is not None:
                    conn.close()
            self._writer = self._reader = None
        self.chunks.clear()
        self.checkpointer = Checkpointer(self.path)  # a store used again after close

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._read_lock:
            if self._reader is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._reader = _connect(self.path)
            yield self._reader

    def transaction(self) -> _Transaction:
        """One write transaction, committed on exit (rolled back on an error). The caller
        holds the store's write lock: the writer connection is not shared otherwise."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = _connect(self.path)
            self._writer.execute("PRAGMA wal_autocheckpoint=0")  # the Checkpointer's job
        return _Transaction(self, self._writer)

    def _committed(self, conn: sqlite3.Connection) -> None:
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0:
            self._checkpoint_due(conn)

    def _checkpoint_due(self, conn: sqlite3.Connection) -> None:
        """Wake the checkpointer; or, once the WAL has grown past `WAL_RESTART_PAGES`, finish
        a checkpoint here, between two transactions of the writer.

        SQLite writes the WAL from its start again only when a write transaction begins
        with every page of it copied back; a passive checkpoint beside a writer that
        commits every few hundred microseconds (a chain of tasks, a worker that runs one
        execution after another) never catches up with it, and the WAL grew by the
        writer's every commit for as long as the store stayed open (116 MB after 3,000
        tasks). The checkpointer has copied all but the last few commits: the writer copies
        those, and its next transaction starts the WAL over. What is on disk after each
        commit is unchanged."""
        checkpointer = self.checkpointer
        runs, last = checkpointer.runs, checkpointer.last
        if last is not None and last[1] >= WAL_RESTART_PAGES and runs != self._finished_after:
            self._finished_after = runs
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
            except sqlite3.Error:
                busy = 1
            # busy (another connection checkpointing): the next time, then
            self.restarts += not busy
            return
        checkpointer.wake()

    # -- reads --------------------------------------------------------------------------

    def revision(self) -> str | None:
        with self._reading() as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'"
            ).fetchone()
            if found is None:
                return None
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if row is None else str(row[0])

    def _execution_where(self, where: str, params: Sequence[Any]) -> ExecutionRecord | None:
        with self._reading() as conn:
            row = conn.execute(f"{_SELECT_EXECUTION} WHERE {where}", params).fetchone()
        return None if row is None else _decode_row(ExecutionRecord, EXECUTION_COLUMNS, row)

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return self._execution_where("id = ?", (execution_id,))

    def find_by_name(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        return self._execution_where(
            "project = ? AND domain = ? AND name = ?", (project, domain, name)
        )

    def list_executions(
        self,
        *,
        project: str | None,
        domain: str | None,
        phases: Iterable[str] | None,
        workflow: str | None,
        limit: int,
        offset: int,
    ) -> list[ExecutionRecord]:
        where: list[str] = []
        params: list[Any] = []
        if project:
            where.append("project = ?")
            params.append(project)
        if domain:
            where.append("domain = ?")
            params.append(domain)
        if phases:
            chosen = list(phases)
            where.append(f"phase IN ({', '.join('?' * len(chosen))})")
            params.extend(chosen)
        if workflow:
            where.append("workflow_name LIKE ?")
            params.append(f"%{workflow}%")
        sql = _SELECT_EXECUTION + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._reading() as conn:
            rows = conn.execute(
                f"{sql} ORDER BY created_at DESC LIMIT ? OFFSET ?", [*params, limit, offset]
            ).fetchall()
        return [_decode_row(ExecutionRecord, EXECUTION_COLUMNS, row) for row in rows]

    def cancel_requested(self, execution_id: str, since: float) -> str | None:
        with self._reading() as conn:
            row = conn.execute(
                "SELECT message FROM events WHERE execution_id = ? "
                "AND phase = 'CANCEL_REQUESTED' AND at >= ? LIMIT 1",
                (execution_id, since),
            ).fetchone()
        return None if row is None else str(row[0] or "requested")

    # -- writes (the caller holds the write lock) ---------------------------------------

    def create_execution(self, rec: ExecutionRecord) -> None:
        row = encode(dict(vars(rec)))  # (not asdict: it deep-copies `code`)
        with self.transaction() as conn:
            conn.execute(_INSERT_EXECUTION, [row[c] for c in EXECUTION_COLUMNS])

    def apply(self, batch: Any, into: sqlite3.Connection | None = None) -> None:
        """`MetadataStore.apply` of a `Batch`, in the same order of statements; `into`: in
        that connection's write transaction, open already (the caller commits)."""
        with self.transaction() if into is None else nullcontext(into) as conn:
            for execution_id, values in batch.executions.items():
                row = encode(dict(values))
                unknown = set(row) - set(EXECUTION_COLUMNS)
                if unknown:
                    raise ValueError(f"executions have no column {sorted(unknown)}")
                conn.execute(
                    f"UPDATE executions SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?",
                    [*row.values(), execution_id],
                )
            items = self._item_writer(conn)
            for queued in batch.items_queued:
                items.queue(
                    queued.execution_id,
                    queued.parent_id,
                    queued.name,
                    queued.task_name,
                    queued.count,
                    queued.at,
                )
            item_rows, nodes = items.nodes(batch.nodes.values())
            nodes.extend(item_rows)
            if nodes:
                conn.executemany(_UPSERT_NODE, _rows(nodes, NODE_COLUMNS))
            for stopped in batch.items_stopped:
                items.stop(
                    stopped.execution_id,
                    stopped.parent_id,
                    stopped.phase,
                    stopped.at,
                    stopped.message,
                )
            missing, attempts = items.attempts(batch.attempts.values())
            if missing:
                conn.executemany(_INSERT_NODE_IF_MISSING, _rows(missing, NODE_COLUMNS))
            if attempts:
                conn.executemany(_UPSERT_ATTEMPT, _rows(attempts, ATTEMPT_COLUMNS))
            if batch.handles:
                items.mark_rows((n.execution_id, n.node_id) for n, _ in batch.handles)
                self._write_handles(conn, batch.handles)
            items.flush()
            if batch.events:
                conn.executemany(_INSERT_EVENT, _rows(batch.events, EVENT_COLUMNS))
            if batch.cache_entries:
                keys = [e.key for e in batch.cache_entries]
                for start in range(0, len(keys), 500):
                    chunk = keys[start : start + 500]
                    conn.execute(
                        f"DELETE FROM cache_entries WHERE key IN ({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                latest = {e.key: dict(vars(e)) for e in batch.cache_entries}
                for entry in latest.values():
                    columns = list(entry)
                    conn.execute(
                        f"INSERT INTO cache_entries ({', '.join(columns)}) "
                        f"VALUES ({', '.join('?' * len(columns))})",
                        list(entry.values()),
                    )
            for key, owner in batch.reservation_releases:
                conn.execute(
                    "DELETE FROM cache_reservations WHERE key = ? AND owner = ?", (key, owner)
                )

    def _item_writer(self, conn: sqlite3.Connection) -> ItemWriter:
        return ItemWriter(
            lambda sql, p: conn.execute(sql, p).fetchall(), conn.executemany, self.chunks
        )

    def _data_version(self) -> int:
        """The writer's `PRAGMA data_version`: moves when another connection commits."""
        assert self._writer is not None
        return int(self._writer.execute("PRAGMA data_version").fetchone()[0])

    def write_handles(self, handles: Sequence[tuple[NodeRecord, AttemptRecord]]) -> None:
        """`MetadataStore.record_attempt_handle`, in a transaction of its own."""
        with self.transaction() as conn:
            items = self._item_writer(conn)
            items.mark_rows((n.execution_id, n.node_id) for n, _ in handles)
            items.flush()
            self._write_handles(conn, handles)

    @staticmethod
    def _write_handles(
        conn: sqlite3.Connection, handles: Sequence[tuple[NodeRecord, AttemptRecord]]
    ) -> None:
        """The node rows when missing, then the attempts' handles (rows made when missing)."""
        conn.executemany(_INSERT_NODE_IF_MISSING, _rows([n for n, _ in handles], NODE_COLUMNS))
        conn.executemany(_UPSERT_HANDLE, _rows([a for _, a in handles], ATTEMPT_COLUMNS))

    def claim_execution(
        self, execution_id: str, where: str, params: Sequence[Any], values: dict[str, Any]
    ) -> bool:
        sets = ", ".join(f"{k} = ?" for k in values)
        with self.transaction() as conn:
            cursor = conn.execute(
                f"UPDATE executions SET {sets} WHERE id = ? AND {where}",
                [*values.values(), execution_id, *params],
            )
            return bool(cursor.rowcount)


#: per column list (by id(): the module's constant tuples), its picker and JSON columns
_ROW_SHAPES: dict[int, tuple[Sequence[str], Any, list[int]]] = {}


def _rows(records: Any, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    """Each record's column values in `columns`' order, JSON columns as text."""
    shape = _ROW_SHAPES.get(id(columns))
    if shape is None or shape[0] is not columns:
        shape = (
            columns,
            operator.itemgetter(*columns),
            [i for i, c in enumerate(columns) if c in _JSON_FIELDS],
        )
        _ROW_SHAPES[id(columns)] = shape
    _, pick, encoded = shape
    if not encoded:
        return [pick(vars(rec)) for rec in records]
    out = []
    for rec in records:
        picked = pick(vars(rec))
        for i in encoded:
            if picked[i] is not None or columns[i] != "error":
                break
        else:  # nothing to encode (a node's error, None: most rows)
            out.append(picked)
            continue
        row = list(picked)
        for i in encoded:
            value = row[i]
            if value is None:
                if columns[i] != "error":
                    row[i] = "null"
            elif value == []:  # most attempts' log links (no encoder call for them)
                row[i] = "[]"
            else:
                row[i] = _dumps(value)
        out.append(tuple(row))
    return out
