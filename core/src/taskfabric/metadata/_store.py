"""The metadata store: executions, nodes, attempts and events in one database."""

from __future__ import annotations

import json
import operator
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric.lazy import lazy_module
from taskfabric.metadata import _item_reads as ir
from taskfabric.metadata._connections import DEFAULT_POOL_SIZE, postgres_engine
from taskfabric.metadata._events import read_events
from taskfabric.metadata._items import (
    CHUNK,
    Chunk,
    ItemWriter,
    item_of,
    materialize,
    packed_attempts,
)
from taskfabric.metadata._lite import LiteStore, sqlite_file_of
from taskfabric.metadata._lite import encode as _encode
from taskfabric.metadata._pgrun import PgRunPath
from taskfabric.metadata._records import (
    AttemptRecord,
    EventRecord,
    ExecutionRecord,
    MapItemsQueued,
    MapItemsStopped,
    NodeRecord,
    PriorItem,
)
from taskfabric.metadata._revision import HEAD_REVISION

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection, Engine

    from taskfabric.metadata import _schema as s
else:  # imported on first use: the SQLite run path goes through `_lite` and sqlite3 alone
    sa = lazy_module("sqlalchemy", __name__, "sa")
    s = lazy_module("taskfabric.metadata._schema", __name__, "s")

_JSON_FIELDS = {"code", "error", "log_links"}
#: Columns an upsert of the table never overwrites: written by their own method only.
_KEPT_ON_UPDATE = {"node_attempts": frozenset({"handle"})}


def _decode(cls: type[Any], row: sa.Row[Any]) -> Any:
    data = dict(row._mapping)
    for key in _JSON_FIELDS & data.keys():
        if data[key] is not None:
            data[key] = json.loads(data[key])
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class _Prepared:
    """A statement in the driver's own SQL and the names of its parameters, in order."""

    sql: str
    keys: tuple[str, ...]
    positional: bool

    def params(self, rows: Sequence[dict[str, Any]]) -> list[Any]:
        """Each row's parameters as the driver takes them (JSON columns encoded, as
        `_encode` does)."""
        keys = self.keys
        if not keys:
            return [() for _ in rows]
        if not self.positional:
            return [_encode({k: r[k] for k in keys}) for r in rows]
        values = operator.itemgetter(*keys)
        if len(keys) == 1:
            return [(values(r),) for r in rows]
        encoded = [(i, k) for i, k in enumerate(keys) if k in _JSON_FIELDS]
        if not encoded:
            return [values(r) for r in rows]
        out = []
        for r in rows:
            row = list(values(r))
            for i, k in encoded:
                if row[i] is not None or k != "error":
                    row[i] = json.dumps(row[i], separators=(",", ":"), sort_keys=True)
            out.append(tuple(row))
        return out


@dataclass
class Batch:
    """Writes applied together in one transaction (see MetadataStore.apply)."""

    executions: dict[str, dict[str, Any]] = field(default_factory=dict)
    nodes: dict[tuple[str, str], NodeRecord] = field(default_factory=dict)
    attempts: dict[tuple[str, str, int], AttemptRecord] = field(default_factory=dict)
    events: list[EventRecord] = field(default_factory=list)
    cache_entries: list[Any] = field(default_factory=list)
    reservation_releases: list[tuple[str, str]] = field(default_factory=list)
    #: maps' items queued in bulk (written before `nodes`) and stopped (after them)
    items_queued: list[MapItemsQueued] = field(default_factory=list)
    items_stopped: list[MapItemsStopped] = field(default_factory=list)
    #: attempts' handles (see MetadataStore.record_attempt_handle), written after `attempts`
    handles: list[tuple[NodeRecord, AttemptRecord]] = field(default_factory=list)

    def update_execution(self, execution_id: str, **values: Any) -> None:
        self.executions.setdefault(execution_id, {}).update(values)

    def node(self, rec: NodeRecord) -> None:
        self.nodes[(rec.execution_id, rec.node_id)] = rec

    def attempt(self, rec: AttemptRecord) -> None:
        self.attempts[(rec.execution_id, rec.node_id, rec.attempt)] = rec

    def event(self, rec: EventRecord) -> None:
        self.events.append(rec)

    def queue_items(self, rec: MapItemsQueued) -> None:
        self.items_queued.append(rec)

    def stop_items(self, rec: MapItemsStopped) -> None:
        self.items_stopped.append(rec)

    def cache_entry(self, entry: Any) -> None:
        """A catalog entry (taskfabric.catalog.CacheEntry) written with the node's success."""
        self.cache_entries.append(entry)

    def release_reservation(self, key: str, owner: str) -> None:
        self.reservation_releases.append((key, owner))

    def attempt_handle(self, node: NodeRecord, attempt: AttemptRecord) -> None:
        """`attempt.handle` stored on its attempt row, as `record_attempt_handle` does."""
        self.handles.append((node, attempt))

    def __bool__(self) -> bool:
        return bool(
            self.executions
            or self.nodes
            or self.attempts
            or self.events
            or self.cache_entries
            or self.reservation_releases
            or self.items_queued
            or self.items_stopped
            or self.handles
        )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # WAL is stored in the file: only the first connection ever switches to it. Switching
    # needs the database to itself, and SQLite does not wait for that, so retry briefly
    # when several processes open a new database at the same moment.
    for _ in range(100):
        try:
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal":
                break
            cur.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:
            time.sleep(0.05)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def create_db_engine(url: str, *, pool_size: int | None = None) -> Engine:
    """A SQLAlchemy engine for `url`, tuned for the engine's write pattern. On PostgreSQL it
    holds at most `pool_size` connections (default `DEFAULT_POOL_SIZE`; see `_connections`)."""
    sa_url = sa.make_url(url)
    if sa_url.get_backend_name() == "sqlite":
        if sa_url.database and sa_url.database != ":memory:":
            Path(sa_url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            sa_url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=sa.pool.QueuePool if sa_url.database != ":memory:" else sa.pool.StaticPool,
        )
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if sa_url.get_backend_name() == "postgresql":
        return postgres_engine(sa_url, pool_size=pool_size or DEFAULT_POOL_SIZE)
    return sa.create_engine(sa_url, pool_pre_ping=True)


def reads(engine: Engine) -> Engine:
    """The engine for reads that need no transaction (one query, or a few that need not
    agree): on PostgreSQL in autocommit, so a connection's use is its query alone, without
    the BEGIN and ROLLBACK round trips psycopg adds around it (1.8 -> 1.0 ms a use here).
    The same pool; elsewhere the engine itself."""
    if engine.dialect.name != "postgresql":
        return engine
    found: Engine | None = getattr(engine, "_taskfabric_reads", None)
    if found is None:
        found = engine.execution_options(isolation_level="AUTOCOMMIT")
        engine._taskfabric_reads = found  # type: ignore[attr-defined]
    return found


class MetadataStore:
    """Reads and writes execution metadata. Thread-safe; one instance per process."""

    def __init__(self, url: str, *, migrate: bool = True, pool_size: int | None = None) -> None:
        """`pool_size`: the most connections this store holds on PostgreSQL (the caller's
        `[metadata] pool_size`, or a size derived from its work; see `_connections`)."""
        self.url = url
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._engine_lock = threading.Lock()
        #: the run path's calls on a plain SQLite file, without SQLAlchemy (see `_lite`)
        file = sqlite_file_of(url)
        self._lite = LiteStore(file) if file is not None else None
        self._dialect = "sqlite" if self._lite is not None else self.engine.dialect.name
        #: the run path's calls on PostgreSQL, through psycopg (see `_pgrun`)
        self._pg = PgRunPath(self.engine) if self._dialect == "postgresql" else None
        self._write_lock = threading.Lock()
        #: the write transaction `open_write` began: its exit stack, connection and thread
        self._shared: tuple[ExitStack, Any, int] | None = None
        self._upserts: dict[str, Any] = {}
        self._prepared_sql: dict[str, _Prepared] = {}
        if migrate:
            self.migrate()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of the database (made on first use)."""
        engine = self._engine
        if engine is None:
            with self._engine_lock:
                if self._engine is None:
                    self._engine = create_db_engine(self.url, pool_size=self.pool_size)
                engine = self._engine
        return engine

    def close(self) -> None:
        if self._lite is not None:
            with self._write_lock:
                self._lite.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- schema ---------------------------------------------------------------------

    def current_revision(self) -> str | None:
        if self._lite is not None:
            return self._lite.revision()
        with self.engine.connect() as conn:
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

    def migrate(self) -> None:
        """Bring the schema to the newest revision (cheap when it already is).

        Safe when several processes open a new database at once: they take a lock (a file
        lock beside an SQLite file, an advisory lock on PostgreSQL), and the ones that wait
        find the schema already current.
        """
        if self.current_revision() == HEAD_REVISION:
            return
        url = self.engine.url
        if self._dialect == "sqlite" and url.database and url.database != ":memory:":
            import fcntl

            lock_path = Path(url.database).expanduser().with_suffix(".migrate-lock")
            with lock_path.open("w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    if self.current_revision() != HEAD_REVISION:
                        with self.engine.begin() as conn:
                            self._upgrade(conn)
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
            return
        with self.engine.begin() as conn:
            if self._dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(7270736973)"))
                if (
                    sa.inspect(conn).has_table("alembic_version")
                    and conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
                    == HEAD_REVISION
                ):
                    return
            self._upgrade(conn)

    def _upgrade(self, conn: Connection) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")

    # -- writes ---------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        """The dialect's INSERT for `table` (the one with ON CONFLICT clauses)."""
        if self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:
            raise NotImplementedError(
                f"taskfabric supports SQLite and PostgreSQL metadata databases, not {self._dialect}"
            )
        return insert(table)

    def _upsert_statement(self, table: sa.Table) -> Any:
        """INSERT … ON CONFLICT DO UPDATE for `table`, built once (it is on the hot path)."""
        stmt = self._upserts.get(table.name)
        if stmt is None:
            keys = [c.name for c in table.primary_key.columns]
            kept = _KEPT_ON_UPDATE.get(table.name, frozenset())
            base = self._insert(table)
            update = {
                c.name: base.excluded[c.name]
                for c in table.columns
                if c.name not in keys and c.name not in kept
            }
            stmt = base.on_conflict_do_update(index_elements=keys, set_=update)
            self._upserts[table.name] = stmt
        return stmt

    def _prepared(self, name: str, build: Callable[[], Any], columns: Sequence[str]) -> _Prepared:
        """`build()`'s statement compiled once to the driver's SQL, with the order of its
        parameters: executed with the driver's `executemany` (`exec_driver_sql`), so rows
        skip SQLAlchemy's per-row parameter processing (most of a batch's cost)."""
        found = self._prepared_sql.get(name)
        if found is None:
            compiled = build().compile(dialect=self.engine.dialect, column_keys=list(columns))
            keys = tuple(compiled.positiontup or ()) if compiled.positional else tuple(columns)
            found = _Prepared(str(compiled), keys, bool(compiled.positional))
            self._prepared_sql[name] = found
        return found

    def _write_rows(
        self, conn: Connection, table: sa.Table, records: Iterable[Any], *, upsert: bool
    ) -> None:
        """Insert (or upsert) dataclass `records` whose fields are the table's columns."""
        rows = [vars(r) for r in records]
        if not rows:
            return
        columns = [c.name for c in table.columns if c.name in rows[0]]
        build = (lambda: self._upsert_statement(table)) if upsert else table.insert
        prepared = self._prepared(f"{table.name}:{int(upsert)}", build, columns)
        conn.exec_driver_sql(prepared.sql, prepared.params(rows))

    def _items(self, conn: Connection) -> ItemWriter:
        """The map items' writer of a transaction on `conn` (its SQL in the driver's style)."""
        qmark = conn.dialect.paramstyle == "qmark"

        def sql_of(sql: str) -> str:
            return sql if qmark else sql.replace("?", "%s")

        return ItemWriter(
            lambda sql, p: list(conn.exec_driver_sql(sql_of(sql), tuple(p)).all()),
            lambda sql, ps: None if not ps else conn.exec_driver_sql(sql_of(sql), ps),
        )

    def create_execution(self, rec: ExecutionRecord) -> None:
        """Insert the execution's row; a name taken in its project and domain raises
        one of `integrity_errors()` (sqlite3's on an SQLite file, psycopg's on PostgreSQL)."""
        if self._lite is not None:
            with self._write_lock:
                self._lite.create_execution(rec)
            return
        if self._pg is not None:
            self._pg.create_execution(rec)
            return
        with self._write_lock, self.engine.begin() as conn:
            conn.execute(s.executions.insert(), _encode(asdict(rec)))

    @property
    def shares_writes(self) -> bool:
        """Whether `open_write` can begin a transaction that `apply` then commits."""
        return self._lite is not None

    def open_write(self) -> Any:
        """SQLite: begin a write transaction on the run path's connection (this store's
        write lock held) and return that DBAPI connection, for a caller's statements of
        its own (the pools' grants and releases, engine/_pools.py); the next `apply` on
        this thread writes its batch in the same transaction and commits it, or
        `close_write` ends it. The one already open when this thread opened one."""
        shared = self._shared
        if shared is not None and shared[2] == threading.get_ident():
            return shared[1]
        if self._lite is None:
            raise RuntimeError("open_write: only a SQLite store shares its writes")
        stack = ExitStack()
        stack.enter_context(self._write_lock)
        try:
            conn = stack.enter_context(self._lite.transaction())
        except BaseException:
            stack.close()
            raise
        self._shared = (stack, conn, threading.get_ident())
        return conn

    def write_open(self) -> bool:
        """Whether this thread has a transaction of `open_write` open."""
        shared = self._shared
        return shared is not None and shared[2] == threading.get_ident()

    def close_write(self, *, commit: bool = True) -> None:
        """Commit (or roll back) the transaction this thread began with `open_write`."""
        shared = self._shared
        if shared is None or shared[2] != threading.get_ident():
            return
        self._shared = None
        if commit:
            shared[0].close()
        else:
            shared[0].__exit__(RuntimeError, RuntimeError("rolled back"), None)

    def apply(self, batch: Batch) -> None:
        """Apply every write of `batch` in one transaction (the one this thread began with
        `open_write`, if any, which is committed then)."""
        shared = self._shared
        if shared is not None and shared[2] == threading.get_ident():
            assert self._lite is not None
            try:
                self._lite.apply(batch, into=shared[1])
            except BaseException:
                self.close_write(commit=False)
                raise
            self.close_write()
            return
        if not batch:
            return
        if self._lite is not None:
            with self._write_lock:
                self._lite.apply(batch)
            return
        if self._pg is not None and not (
            batch.items_queued
            or batch.items_stopped
            or batch.cache_entries
            or batch.reservation_releases
        ):
            with self._write_lock:
                self._pg.apply(batch)
            return
        with self._write_lock, self.engine.begin() as conn:
            for execution_id, values in batch.executions.items():
                conn.execute(
                    s.executions.update().where(s.executions.c.id == execution_id),
                    _encode(dict(values)),
                )
            items = self._items(conn)
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
            self._write_rows(conn, s.node_executions, nodes, upsert=True)
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
                self._insert_missing_nodes(conn, [vars(n) for n in missing])
            self._write_rows(conn, s.node_attempts, attempts, upsert=True)
            if batch.handles:
                items.mark_rows((n.execution_id, n.node_id) for n, _ in batch.handles)
                self._write_handles(conn, batch.handles)
            items.flush()
            self._write_rows(conn, s.events, batch.events, upsert=False)
            if batch.cache_entries:
                t = s.cache_entries
                conn.execute(t.delete().where(t.c.key.in_([e.key for e in batch.cache_entries])))
                latest = {e.key: e for e in batch.cache_entries}
                conn.execute(t.insert(), [dict(vars(e)) for e in latest.values()])
            for key, owner in batch.reservation_releases:
                r = s.cache_reservations
                conn.execute(r.delete().where(r.c.key == key, r.c.owner == owner))

    def record_attempt_handle(self, node: NodeRecord, attempt: AttemptRecord) -> None:
        """Store `attempt.handle` on its attempt row, committed before this returns.

        Called from a backend's thread, possibly before the engine's loop committed the node
        and attempt rows: those are created from `node` and `attempt` when missing (the loop's
        own writes then complete them), and only the handle is written when they exist."""
        if self._lite is not None:
            with self._write_lock:
                self._lite.write_handles([(node, attempt)])
            return
        if self._pg is not None:
            with self._write_lock:
                self._pg.write_handles([(node, attempt)])
            return
        with self._write_lock, self.engine.begin() as conn:
            items = self._items(conn)
            items.mark_rows([(node.execution_id, node.node_id)])
            items.flush()
            self._write_handles(conn, [(node, attempt)])

    def _insert_missing_nodes(self, conn: Connection, records: list[dict[str, Any]]) -> None:
        """Node rows made where missing (existing rows left as they are)."""
        table = s.node_executions
        columns = [c.name for c in table.columns if c.name in records[0]]

        def build() -> Any:
            keys = [c.name for c in table.primary_key.columns]
            return self._insert(table).on_conflict_do_nothing(index_elements=keys)

        prepared = self._prepared("node_executions:handle", build, columns)
        conn.exec_driver_sql(prepared.sql, prepared.params(records))

    def _write_handles(
        self, conn: Connection, handles: Sequence[tuple[NodeRecord, AttemptRecord]]
    ) -> None:
        """The node rows when missing, then the attempts' handles (rows made when missing),
        with statements compiled once."""
        for table, records in (
            (s.node_executions, [vars(n) for n, _ in handles]),
            (s.node_attempts, [vars(a) for _, a in handles]),
        ):
            keys = [c.name for c in table.primary_key.columns]
            columns = [c.name for c in table.columns if c.name in records[0]]

            def build(table: sa.Table = table, keys: list[str] = keys) -> Any:
                base = self._insert(table)
                if table is s.node_executions:
                    return base.on_conflict_do_nothing(index_elements=keys)
                return base.on_conflict_do_update(
                    index_elements=keys, set_={"handle": base.excluded.handle}
                )

            prepared = self._prepared(f"{table.name}:handle", build, columns)
            conn.exec_driver_sql(prepared.sql, prepared.params(records))

    def update_execution(self, execution_id: str, **values: Any) -> None:
        batch = Batch()
        batch.update_execution(execution_id, **values)
        self.apply(batch)

    def claim_execution(
        self,
        execution_id: str,
        owner: str,
        *,
        now: float,
        stale_before: float | None,
        force: bool,
        phase: str | None = None,
    ) -> bool:
        """Take ownership of an execution if its owner is gone (heartbeat older than
        `stale_before`), it has no owner, or `force`. Atomic across processes.

        With `phase`, the claim holds only while the execution is still in that phase (the
        one its claimant read): a queued execution cancelled meanwhile (now ABORTED) is not
        taken. A QUEUED execution claimed turns RUNNING in the same statement, so a cancel
        request from then on goes to its engine instead of aborting it as queued."""
        if self._lite is not None:
            where, params = ["1 = 1"], list[Any]()
            if not force:
                unowned = "owner = '' OR heartbeat_at IS NULL"
                if stale_before is not None:
                    unowned += " OR heartbeat_at < ?"
                    params.append(stale_before)
                where.append(f"({unowned})")
            values: dict[str, Any] = {"owner": owner, "heartbeat_at": now}
            if phase is not None:
                where.append("phase = ?")
                params.append(phase)
                if phase == "QUEUED":
                    values.update(phase="RUNNING", started_at=now)
            with self._write_lock:
                return self._lite.claim_execution(execution_id, " AND ".join(where), params, values)
        t = s.executions
        cond = t.c.id == execution_id
        if not force:
            free = (t.c.owner == "") | (t.c.heartbeat_at.is_(None))
            if stale_before is not None:
                free = free | (t.c.heartbeat_at < stale_before)
            cond = cond & free
        values = {"owner": owner, "heartbeat_at": now}
        if phase is not None:
            cond = cond & (t.c.phase == phase)
            if phase == "QUEUED":
                values.update(phase="RUNNING", started_at=now)
        with self._write_lock, self.engine.begin() as conn:
            result = conn.execute(t.update().where(cond).values(**values))
            return bool(result.rowcount)

    def claim_queued(
        self, owner: str, *, now: float, limit: int, skip: Iterable[str] = ()
    ) -> list[tuple[ExecutionRecord, bool]]:
        """Take up to `limit` QUEUED executions, oldest first (but those in `skip`), in one
        transaction: each turns RUNNING, owned by `owner`, started now, with its 'started by'
        event. Returns each claimed record and whether it is fresh: without node rows (it
        never ran; one put back in the queue by a recover has some, and is resumed).

        What a worker calls instead of a read of the queue and a claim per execution:
        concurrent callers never get the same execution (PostgreSQL skips the rows another
        transaction is claiming; SQLite has one writer at a time), so engine processes do
        not race for the oldest ones; and a cancel of a claimed one goes to its engine, as
        for `claim_execution`."""
        if limit <= 0:
            return []
        skipped = list(skip)
        if self._pg is not None:
            with self._write_lock:
                return self._pg.claim_queued(owner, now=now, limit=limit, skip=skipped)
        t, n = s.executions, s.node_executions
        pick = sa.select(t.c.id).where(t.c.phase == "QUEUED")
        if skipped:
            pick = pick.where(t.c.id.not_in(skipped))
        pick = pick.order_by(t.c.created_at).limit(limit)
        claim = t.update().values(owner=owner, heartbeat_at=now, phase="RUNNING", started_at=now)
        with self._write_lock, self.engine.begin() as conn:
            # SQLite (PostgreSQL's is `_pgrun`'s): one statement, since a read first would
            # fail to upgrade to a write under load
            claim = claim.where(t.c.id.in_(pick), t.c.phase == "QUEUED")
            recs = [_decode(ExecutionRecord, r) for r in conn.execute(claim.returning(*t.c)).all()]
            if not recs:
                return []
            ids = [r.id for r in recs]
            message = f"started by {owner}"
            conn.execute(
                s.events.insert(),
                [
                    {"execution_id": i, "node_id": "", "attempt": 0, "phase": "RUNNING"}
                    | {"at": now, "message": message}
                    for i in ids
                ],
            )
            ran = set(
                conn.execute(
                    sa.select(n.c.execution_id).where(n.c.execution_id.in_(ids)).distinct()
                ).scalars()
            )
        recs.sort(key=operator.attrgetter("created_at"))
        return [(r, r.id not in ran) for r in recs]

    def unclaim(self, execution_id: str, owner: str, *, now: float, message: str) -> bool:
        """Put an execution that `owner` claimed from the queue but could not start back in
        the queue (QUEUED, no owner), with an event saying why; False (nothing done) when it
        is no longer RUNNING under `owner` (its run began and ended, or left it)."""
        t = s.executions
        with self._write_lock, self.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.id == execution_id, t.c.owner == owner, t.c.phase == "RUNNING")
                .values(phase="QUEUED", owner="", heartbeat_at=None, started_at=None)
            ).rowcount
            if done:
                conn.execute(
                    s.events.insert(),
                    {"execution_id": execution_id, "node_id": "", "attempt": 0}
                    | {"phase": "QUEUED", "at": now, "message": message[:500]},
                )
        return bool(done)

    # -- reads ----------------------------------------------------------------------

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        if self._lite is not None:
            return self._lite.get_execution(execution_id)
        if self._pg is not None:
            return self._pg.get_execution(execution_id)
        with reads(self.engine).connect() as conn:
            row = conn.execute(
                sa.select(s.executions).where(s.executions.c.id == execution_id)
            ).first()
        return None if row is None else _decode(ExecutionRecord, row)

    def request_cancel(self, execution_id: str, reason: str, *, now: float) -> str:
        """Cancel a queued execution at once, or ask the engine running it to abort it.

        Returns the execution's phase after the call. The request travels as an event
        (phase CANCEL_REQUESTED) that the owning engine reads within a second.
        """
        t = s.executions
        with self._write_lock, self.engine.begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.id == execution_id, t.c.phase == "QUEUED")
                .values(
                    phase="ABORTED",
                    finished_at=now,
                    error=json.dumps(
                        {"kind": "system", "code": "Aborted", "message": f"cancelled: {reason}"}
                    ),
                )
            ).rowcount
            row = conn.execute(
                sa.select(t.c.phase, t.c.heartbeat_at).where(t.c.id == execution_id)
            ).first()
            # An engine counts cancel requests from its claim (its heartbeat_at then): one
            # that claimed the execution between this process's clock reading and this
            # transaction must still see the request, so it is dated no earlier than that.
            at = max(now, (row.heartbeat_at or 0.0) if row is not None else 0.0)
            conn.execute(
                s.events.insert(),
                {
                    "execution_id": execution_id,
                    "node_id": "",
                    "attempt": 0,
                    "phase": "CANCEL_REQUESTED",
                    "at": at,
                    "message": reason,
                },
            )
        return "ABORTED" if done else str(row.phase if row is not None else None)

    def cancel_requested(self, execution_id: str, since: float) -> str | None:
        """The reason of a cancel request made at or after `since`, if any."""
        if self._lite is not None:
            return self._lite.cancel_requested(execution_id, since)
        if self._pg is not None:
            return self._pg.cancel_requested(execution_id, since)
        e = s.events
        with reads(self.engine).connect() as conn:
            row = conn.execute(
                sa.select(e.c.message)
                .where(
                    e.c.execution_id == execution_id,
                    e.c.phase == "CANCEL_REQUESTED",
                    e.c.at >= since,
                )
                .limit(1)
            ).first()
        return None if row is None else str(row.message or "requested")

    def find_by_name(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        if self._lite is not None:
            return self._lite.find_by_name(project, domain, name)
        if self._pg is not None:
            return self._pg.find_by_name(project, domain, name)
        t = s.executions
        with reads(self.engine).connect() as conn:
            row = conn.execute(
                sa.select(t).where(t.c.project == project, t.c.domain == domain, t.c.name == name)
            ).first()
        return None if row is None else _decode(ExecutionRecord, row)

    def runnable_executions(self, *, stale_before: float, limit: int = 50) -> list[ExecutionRecord]:
        """QUEUED executions (oldest first), then RUNNING ones nobody heartbeats any more."""
        t = s.executions
        q = (
            sa.select(t)
            .where(
                (t.c.phase == "QUEUED")
                | (
                    (t.c.phase == "RUNNING")
                    & (
                        (t.c.owner == "")
                        | t.c.heartbeat_at.is_(None)
                        | (t.c.heartbeat_at < stale_before)
                    )
                )
            )
            .order_by(t.c.created_at)
            .limit(limit)
        )
        with reads(self.engine).connect() as conn:
            return [_decode(ExecutionRecord, r) for r in conn.execute(q).all()]

    def running_owners(self, host: str, limit: int = 1000) -> list[tuple[str, str]]:
        """(id, owner) of the RUNNING executions owned by a process of `host` (owners are
        `host:pid`): what a worker checks for owners that died on its host. Two columns,
        not whole records: a worker asks this often."""
        t = s.executions
        like = host.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_") + ":%"
        q = (
            sa.select(t.c.id, t.c.owner)
            .where(t.c.phase == "RUNNING", t.c.owner.like(like, escape="\\"))
            .limit(limit)
        )
        with reads(self.engine).connect() as conn:
            return [(r[0], r[1]) for r in conn.execute(q).all()]

    def find_executions(self, prefix: str, limit: int = 5) -> list[ExecutionRecord]:
        """Executions whose id or name starts with `prefix` (for abbreviated ids)."""
        t = s.executions
        like = prefix.replace("%", r"\%").replace("_", r"\_") + "%"
        with reads(self.engine).connect() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.id.like(like, escape="\\") | t.c.name.like(like, escape="\\"))
                .order_by(t.c.created_at.desc())
                .limit(limit)
            ).all()
        return [_decode(ExecutionRecord, r) for r in rows]

    def list_executions(
        self,
        *,
        project: str | None = None,
        domain: str | None = None,
        phases: Iterable[str] | None = None,
        workflow: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ExecutionRecord]:
        if self._lite is not None:
            return self._lite.list_executions(
                project=project,
                domain=domain,
                phases=phases,
                workflow=workflow,
                limit=limit,
                offset=offset,
            )
        t = s.executions
        q = sa.select(t).order_by(t.c.created_at.desc()).limit(limit).offset(offset)
        if project:
            q = q.where(t.c.project == project)
        if domain:
            q = q.where(t.c.domain == domain)
        if phases:
            q = q.where(t.c.phase.in_(list(phases)))
        if workflow:
            q = q.where(t.c.workflow_name.like(f"%{workflow}%"))
        with reads(self.engine).connect() as conn:
            return [_decode(ExecutionRecord, r) for r in conn.execute(q).all()]

    def nodes(self, execution_id: str) -> list[NodeRecord]:
        """Every node of the execution, its maps' items materialized (`_items`)."""
        t = s.node_executions
        with reads(self.engine).connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.execution_id == execution_id)).all()
            found = [_decode(NodeRecord, r) for r in rows]
            chunks = list(ir.chunk_rows(conn, execution_id))
        if not chunks:
            return found
        return [n for n in found if n.kind != "map_item"] + materialize(
            chunks, [n for n in found if n.kind == "map_item"]
        )

    def item_counts(self, execution_id: str) -> dict[str, dict[str, int]]:
        """map node id -> {phase: number of its items in it}."""
        t = s.node_executions
        with reads(self.engine).connect() as conn:
            packed = ir.phase_counts(conn, execution_id)
            q = (
                sa.select(t.c.parent_id, t.c.phase, sa.func.count())
                .where(t.c.execution_id == execution_id, t.c.kind == "map_item")
                .group_by(t.c.parent_id, t.c.phase)
            )
            found: dict[str, dict[str, int]] = {m: dict(c) for m, c in packed.items()}
            for parent, phase, count in conn.execute(q).all():
                if str(parent) not in packed:  # items recorded before chunks (0010)
                    found.setdefault(str(parent), {})[str(phase)] = int(count)
        return found

    def item_page(
        self,
        execution_id: str,
        map_id: str,
        *,
        phases: Sequence[str] = (),
        after: str = "",
        limit: int,
    ) -> list[NodeRecord] | None:
        """A page of a packed map's items by index (see `_item_reads.page`); None when the
        map's items are rows (recorded before migration 0010)."""
        t = s.node_executions
        with reads(self.engine).connect() as conn:
            if ir.chunk_row(conn, execution_id, map_id, 0) is None:
                return None

            def rows_of(node_ids: list[str]) -> list[NodeRecord]:
                q = sa.select(t).where(t.c.execution_id == execution_id, t.c.node_id.in_(node_ids))
                return [_decode(NodeRecord, r) for r in conn.execute(q).all()]

            return ir.page(
                conn, execution_id, map_id, phases=phases, after=after, limit=limit, rows_of=rows_of
            )

    def node(self, execution_id: str, node_id: str) -> NodeRecord | None:
        """One node (a map item materialized from its chunk)."""
        t = s.node_executions
        q = sa.select(t).where(t.c.execution_id == execution_id, t.c.node_id == node_id)
        item = item_of(node_id)
        with reads(self.engine).connect() as conn:
            row = conn.execute(q).first()
            found = None if row is None else _decode(NodeRecord, row)
            raw = (
                None
                if item is None
                else ir.chunk_row(conn, execution_id, item[0], item[1] // CHUNK)
            )
        if item is None or raw is None:
            return found
        chunk = Chunk.from_row(raw)
        slot = item[1] % CHUNK
        if slot >= chunk.count:
            return found
        return ir.with_rows(chunk.node(slot), found)

    def prior_nodes(self, execution_id: str) -> list[NodeRecord]:
        """The node rows a resume of the execution reads, map items excepted (`prior_items`
        reads what a resume uses of theirs)."""
        t = s.node_executions
        with reads(self.engine).connect() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.execution_id == execution_id, t.c.kind != "map_item")
            ).all()
        return [_decode(NodeRecord, r) for r in rows]

    def prior_items(self, execution_id: str, chunk: int = 10_000) -> Iterator[PriorItem]:
        """What a resume uses of the execution's map items: `(node_id, phase, attempts,
        outputs_uri)` of each item that succeeded or had an attempt (those queued, skipped
        or aborted in bulk hold nothing it uses), read `chunk` rows at a time, so a map of
        a million items resumed late never has a million full rows in memory."""
        t = s.node_executions
        q = sa.select(t.c.node_id, t.c.phase, t.c.attempts, t.c.outputs_uri).where(
            t.c.execution_id == execution_id,
            t.c.kind == "map_item",
            (t.c.attempts > 0) | (t.c.phase == "SUCCEEDED"),
        )
        with self.engine.connect() as conn:
            # packed items first, then rows (items with rows, or recorded before chunks):
            # a later item of the same id replaces an earlier one (PriorItems.add)
            yield from ir.prior(conn, execution_id)
            result = conn.execution_options(yield_per=chunk).execute(q)
            for rows in result.partitions():
                for node_id, phase, attempts, outputs_uri in rows:
                    yield PriorItem(node_id, phase, attempts or 0, outputs_uri or "")

    def attempts(
        self, execution_id: str, node_id: str | None = None, *, phase: str | None = None
    ) -> list[AttemptRecord]:
        """The attempts of an execution (of one of its nodes; in one phase), by node and
        attempt."""
        t = s.node_attempts
        q = sa.select(t).where(t.c.execution_id == execution_id)
        if node_id is not None:
            q = q.where(t.c.node_id == node_id)
        if phase is not None:
            q = q.where(t.c.phase == phase)
        item = None if node_id is None else item_of(node_id)
        with reads(self.engine).connect() as conn:
            rows = conn.execute(q.order_by(t.c.node_id, t.c.attempt)).all()
            found = [_decode(AttemptRecord, r) for r in rows]
            if node_id is None:
                chunks = list(ir.chunk_rows(conn, execution_id))
            elif item is not None:
                raw = ir.chunk_row(conn, execution_id, item[0], item[1] // CHUNK)
                chunks = [] if raw is None else [raw]
            else:
                chunks = []
        if not chunks:
            return found
        packed = packed_attempts(chunks, phase)
        if node_id is not None:
            packed = [a for a in packed if a.node_id == node_id]
        # the packed attempt of an item whose rows hold one of that number is not its own
        have = {(a.node_id, a.attempt) for a in found}
        found.extend(a for a in packed if (a.node_id, a.attempt) not in have)
        found.sort(key=lambda a: (a.node_id, a.attempt))
        return found

    def events(self, execution_id: str) -> list[EventRecord]:
        """The execution's events in the order they were recorded, with its task nodes'
        transitions that their rows alone record, among them by time (`metadata/_events.py`:
        each attempt's start, each success, a first QUEUED; a cache hit's success)."""
        with reads(self.engine).connect() as conn:
            return read_events(conn, execution_id)
