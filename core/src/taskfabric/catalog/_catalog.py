"""The data catalog: cache entries and reservations in the metadata database."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from taskfabric.lazy import lazy_module
from taskfabric.metadata import MetadataStore, connect_file

if TYPE_CHECKING:
    import sqlalchemy as sa

    from taskfabric.metadata import _schema as s
else:  # imported on first use: an engine whose tasks cache nothing never needs them
    sa = lazy_module("sqlalchemy", __name__, "sa")
    s = lazy_module("taskfabric.metadata._schema", __name__, "s")


#: the longest (seconds) that cache hits read in one transaction that nobody ended (`Catalog.hit`)
READ_AT_MOST = 1.0


@dataclass
class CacheEntry:
    key: str
    project: str
    domain: str
    task_name: str
    cache_version: str
    interface_hash: str
    inputs_hash: str
    outputs_uri: str
    execution_id: str
    node_id: str
    created_at: float
    expires_at: float | None = None
    inputs_uri: str = ""

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


class Hit(NamedTuple):
    """What serving a node from a cache entry reads of it (`Catalog.hit`)."""

    outputs_uri: str
    inputs_uri: str
    execution_id: str
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _entry(row: Any) -> CacheEntry:
    return CacheEntry(**dict(row._mapping))


class Catalog:
    """Reads and writes cache entries; reservations serialize identical computations."""

    def __init__(self, engine: sa.Engine | MetadataStore) -> None:
        """On `engine`, or on a metadata store's (its engine made when the catalog is first
        used, so a run without cached tasks never loads SQLAlchemy; on a plain SQLite file
        cache hits never load it either)."""
        self._source = engine
        self._engine: sa.Engine | None = None
        self._get: Any = None
        self._columns = [f.name for f in fields(CacheEntry)]
        self._sqlite_sql = f"SELECT {', '.join(self._columns)} FROM cache_entries WHERE key = ?"
        self._sqlite_hit_sql = f"SELECT {', '.join(Hit._fields)} FROM cache_entries WHERE key = ?"
        #: whether the database is SQLite (None: not known yet), and the sqlite3 connection
        #: that `get` and `hit` read through there, held (with what closes it)
        self._sqlite: bool | None = None
        self._sqlite_reader: sqlite3.Connection | None = None
        self._sqlite_close: Any = None
        #: whether hits read in transactions that span a turn (only on a connection of the
        #: catalog's own: an engine's pooled one may be shared, as SQLite's in-memory one is)
        self._turn_reads = False
        #: when the read transaction of cache hits began (`time.monotonic()`)
        self._read_since = 0.0
        self._reader_lock = threading.Lock()

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            source = self._source
            self._engine = source.engine if isinstance(source, MetadataStore) else source
        return self._engine

    def close(self) -> None:
        with self._reader_lock:
            if self._sqlite_reader is not None:
                self._sqlite_close()
                self._sqlite_reader = self._sqlite_close = None
                self._sqlite = None
                self._turn_reads = False

    def _reader(self) -> sqlite3.Connection | None:
        """The held sqlite3 connection (call with `_reader_lock` held), or None when the
        database is not SQLite. On a metadata store's plain SQLite file it is a connection
        of its own (no SQLAlchemy: a `taskfabric run` whose tasks all hit never imports
        it); else the DBAPI connection of one of the engine's."""
        conn = self._sqlite_reader
        if conn is None and self._sqlite is not False:
            source = self._source
            if isinstance(source, MetadataStore):
                conn = connect_file(source.url)
                if conn is not None:
                    self._sqlite_close = conn.close
                    self._turn_reads = True
            if conn is None and self.engine.dialect.name == "sqlite":
                raw = self.engine.raw_connection()
                conn = raw.driver_connection
                self._sqlite_close = raw.close
            self._sqlite = conn is not None
            self._sqlite_reader = conn
        return conn

    # -- entries ------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The entry for `key`, as last committed. On SQLite, through the held connection
        with a plain statement (about a tenth of the cost of a pooled SQLAlchemy round
        trip); a read transaction that cache hits left open is ended first."""
        if self._sqlite is not False:
            with self._reader_lock:
                conn = self._reader()
                if conn is not None:
                    if self._turn_reads and conn.in_transaction:
                        conn.execute("COMMIT")
                    row = conn.execute(self._sqlite_sql, (key,)).fetchone()
                    # the columns are selected in CacheEntry's field order
                    return None if row is None else CacheEntry(*row)
        if self._get is None:
            self._get = sa.select(s.cache_entries).where(s.cache_entries.c.key == sa.bindparam("k"))
        with self.engine.connect() as db:
            found = db.execute(self._get, {"k": key}).first()
        return None if found is None else _entry(found)

    def hit(self, key: str) -> Hit | None:
        """What the engine reads of the entry for `key` to serve a node from it (on SQLite
        only those columns, with no `CacheEntry` made: a cache hit's hot path).

        On a metadata store's plain SQLite file the hits of one turn of the engine's loop
        read in one read transaction: the first begins it, `end_reads` ends it (a statement
        in a transaction of its own costs SQLite a lock and an unlock of the WAL's read
        mark, two system calls). A hit sees the catalog as it was committed when that
        turn's first hit read it; a transaction nobody ended is ended by the first hit
        `READ_AT_MOST` seconds after it began."""
        if self._sqlite is not False:
            with self._reader_lock:
                conn = self._sqlite_reader or self._reader()
                if conn is not None:
                    if self._turn_reads and (
                        not conn.in_transaction
                        or time.monotonic() - self._read_since > READ_AT_MOST
                    ):
                        self._in_turn_read(conn)
                    row = conn.execute(self._sqlite_hit_sql, (key,)).fetchone()
                    return None if row is None else Hit(*row)
        entry = self.get(key)
        if entry is None:
            return None
        return Hit(entry.outputs_uri, entry.inputs_uri, entry.execution_id, entry.expires_at)

    def _in_turn_read(self, conn: sqlite3.Connection) -> None:
        """Begin the read transaction of a turn's hits, unless one is open (call with
        `_reader_lock` held); one open `READ_AT_MOST` seconds is ended first."""
        if not conn.in_transaction:
            conn.execute("BEGIN")
            self._read_since = time.monotonic()
        elif time.monotonic() - self._read_since > READ_AT_MOST:
            conn.execute("COMMIT")
            conn.execute("BEGIN")
            self._read_since = time.monotonic()

    def end_reads(self) -> None:
        """End the read transaction of the cache hits made so far (see `hit`): a later hit
        sees every commit made until then, this process's and others'."""
        if self._sqlite_reader is not None:
            with self._reader_lock:
                conn = self._sqlite_reader
                if conn is not None and self._turn_reads and conn.in_transaction:
                    conn.execute("COMMIT")

    def get_many(self, keys: Iterable[str]) -> dict[str, CacheEntry]:
        keys = list(keys)
        if not keys:
            return {}
        found: dict[str, CacheEntry] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                rows = conn.execute(
                    sa.select(s.cache_entries).where(s.cache_entries.c.key.in_(chunk))
                ).all()
                found.update({r.key: _entry(r) for r in rows})
        return found

    def put(self, entry: CacheEntry, conn: sa.Connection | None = None) -> None:
        """Write (or replace) an entry."""
        if conn is None:
            with self.engine.begin() as c:
                self.put(entry, c)
            return
        conn.execute(s.cache_entries.delete().where(s.cache_entries.c.key == entry.key))
        conn.execute(s.cache_entries.insert(), vars(entry))

    def delete(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(s.cache_entries.delete().where(s.cache_entries.c.key == key))

    def find(self, key_prefix: str) -> list[CacheEntry]:
        t = s.cache_entries
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.key.like(key_prefix + "%")).limit(5)).all()
        return [_entry(r) for r in rows]

    def list(
        self,
        *,
        task: str | None = None,
        project: str | None = None,
        domain: str | None = None,
        limit: int = 100,
    ) -> list[CacheEntry]:
        t = s.cache_entries
        q = sa.select(t).order_by(t.c.created_at.desc()).limit(limit)
        if task:
            q = q.where(t.c.task_name.like(f"%{task}%"))
        if project:
            q = q.where(t.c.project == project)
        if domain:
            q = q.where(t.c.domain == domain)
        with self.engine.connect() as conn:
            return [_entry(r) for r in conn.execute(q).all()]

    def evict(
        self,
        *,
        task: str | None = None,
        version: str | None = None,
        older_than: float | None = None,
        key: str | None = None,
        expired: bool = False,
        project: str | None = None,
    ) -> int:
        """Delete matching entries (at least one criterion is required); returns how many."""
        t = s.cache_entries
        conds: list[sa.ColumnElement[bool]] = []
        if task:
            conds.append(t.c.task_name.like(f"%{task}%"))
        if version:
            conds.append(t.c.cache_version == version)
        if older_than is not None:
            conds.append(t.c.created_at < older_than)
        if key:
            conds.append(t.c.key.like(key + "%"))
        if expired:
            conds.append(t.c.expires_at <= time.time())
        if project:
            conds.append(t.c.project == project)
        if not conds:
            raise ValueError("say what to evict: a task, a version, an age, a key or --expired")
        with self.engine.begin() as conn:
            return int(conn.execute(t.delete().where(*conds)).rowcount)

    # -- reservations -------------------------------------------------------------------

    def reserve(self, key: str, owner: str, *, ttl: float, now: float | None = None) -> str:
        """Try to become the one computing `key`. Returns the owner holding it afterwards:
        `owner` itself if it got (or already had) the reservation, or the other holder.
        An expired reservation (its holder stopped heartbeating) is taken over."""
        now = time.time() if now is None else now
        t = s.cache_reservations
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(t).where(t.c.key == key)).first()
            if row is not None and row.owner != owner and row.expires_at > now:
                return str(row.owner)
            if row is None:
                try:
                    with conn.begin_nested():
                        conn.execute(
                            t.insert(),
                            {
                                "key": key,
                                "owner": owner,
                                "heartbeat_at": now,
                                "expires_at": now + ttl,
                            },
                        )
                except sa.exc.IntegrityError:
                    holder = conn.execute(sa.select(t.c.owner).where(t.c.key == key)).scalar()
                    return str(holder)
                return owner
            # ours already, or expired: take it (guarded so two takers cannot both win)
            result = conn.execute(
                t.update()
                .where(t.c.key == key, t.c.owner == row.owner, t.c.expires_at == row.expires_at)
                .values(owner=owner, heartbeat_at=now, expires_at=now + ttl)
            )
            if result.rowcount:
                return owner
            return str(conn.execute(sa.select(t.c.owner).where(t.c.key == key)).scalar())

    def heartbeat(self, keys_owners: Iterable[tuple[str, str]], *, ttl: float) -> None:
        now = time.time()
        t = s.cache_reservations
        with self.engine.begin() as conn:
            for key, owner in keys_owners:
                conn.execute(
                    t.update()
                    .where(t.c.key == key, t.c.owner == owner)
                    .values(heartbeat_at=now, expires_at=now + ttl)
                )

    def release(self, key: str, owner: str, conn: sa.Connection | None = None) -> None:
        if conn is None:
            with self.engine.begin() as c:
                self.release(key, owner, c)
            return
        t = s.cache_reservations
        conn.execute(t.delete().where(t.c.key == key, t.c.owner == owner))
