"""The data catalog: cache entries and reservations in the metadata database."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, NamedTuple

from taskfabric.lazy import lazy_module
from taskfabric.metadata import MetadataStore

if TYPE_CHECKING:
    import sqlalchemy as sa

    from taskfabric.metadata import _schema as s
else:  # imported on first use: an engine whose tasks cache nothing never needs them
    sa = lazy_module("sqlalchemy", __name__, "sa")
    s = lazy_module("taskfabric.metadata._schema", __name__, "s")


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
        used, so a run without cached tasks never loads SQLAlchemy)."""
        self._source = engine
        self._engine: sa.Engine | None = None
        self._get: Any = None
        self._columns = [f.name for f in fields(CacheEntry)]
        self._sqlite_sql = f"SELECT {', '.join(self._columns)} FROM cache_entries WHERE key = ?"
        self._sqlite_hit_sql = f"SELECT {', '.join(Hit._fields)} FROM cache_entries WHERE key = ?"
        self._sqlite_reader: Any = None
        self._sqlite_execute: Any = None
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
                self._sqlite_reader.close()
                self._sqlite_reader = None
                self._sqlite_execute = None

    # -- entries ------------------------------------------------------------------------

    def get(self, key: str) -> CacheEntry | None:
        """The entry for `key`. On SQLite this is the engine's per-task hot path for cached
        tasks, so it reads through one held DBAPI connection with a plain statement (about
        a tenth of the cost of a pooled SQLAlchemy round trip; reads never open a
        transaction there, so they always see the latest commit)."""
        if self._sqlite_execute is not None or self.engine.dialect.name == "sqlite":
            with self._reader_lock:
                if self._sqlite_reader is None:
                    self._sqlite_reader = self.engine.raw_connection()
                    self._sqlite_execute = self._sqlite_reader.driver_connection.execute
                row = self._sqlite_execute(self._sqlite_sql, (key,)).fetchone()
            # the columns are selected in CacheEntry's field order
            return None if row is None else CacheEntry(*row)
        if self._get is None:
            self._get = sa.select(s.cache_entries).where(s.cache_entries.c.key == sa.bindparam("k"))
        with self.engine.connect() as conn:
            found = conn.execute(self._get, {"k": key}).first()
        return None if found is None else _entry(found)

    def hit(self, key: str) -> Hit | None:
        """What the engine reads of the entry for `key` to serve a node from it (on SQLite
        only those columns, with no `CacheEntry` made: a cache hit's hot path)."""
        if self._sqlite_execute is not None or self.engine.dialect.name == "sqlite":
            with self._reader_lock:
                if self._sqlite_reader is None:
                    self._sqlite_reader = self.engine.raw_connection()
                    self._sqlite_execute = self._sqlite_reader.driver_connection.execute
                row = self._sqlite_execute(self._sqlite_hit_sql, (key,)).fetchone()
            return None if row is None else Hit._make(row)
        entry = self.get(key)
        if entry is None:
            return None
        return Hit(entry.outputs_uri, entry.inputs_uri, entry.execution_id, entry.expires_at)

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
