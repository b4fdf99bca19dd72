"""A map's items packed into chunk rows: `map_item_chunks` holds the state of `CHUNK` items
in one row (phase, attempts, times, cache status and where the inputs and outputs are, 60
bytes an item in the `state` blob), instead of a `node_executions` row per item and a
`node_attempts` row per attempt.

An engine committing a few items at a time rewrites one chunk row (read, changed, written:
the same transaction) where it upserted two rows per item and their index entries; a map of a
million items is 15,625 rows at queue time, not a million. Readers materialize the items as
`NodeRecord`s and `AttemptRecord`s on demand (`MetadataStore.nodes`, `attempts`,
`prior_items`, the console's queries), so nothing above the store sees the difference.

An item that needs more than the packed fields (an error, a message, a retry, log links, a
backend's handle) also gets ordinary rows from then on: its chunk marks it (`HAS_ROWS`), and
every later write of the item writes both. Its node row then gives the error and message, the
packed state the rest; its attempts are its attempt rows. Items recorded before the chunks
existed (migration 0010) keep their rows, and are read from them.

Plain `sqlite3`-style SQL (`?` parameters) on purpose: `_lite` runs it on its connection, the
SQLAlchemy path through `exec_driver_sql` (with `%s` on PostgreSQL).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskfabric.metadata._records import AttemptRecord, NodeRecord

if TYPE_CHECKING:
    from taskfabric.metadata._chunk_cache import ChunkCache

#: Items in a chunk row: 64 x 60 bytes fits one 4 KB SQLite page with room to spare.
CHUNK = 64
#: phase, attempt phase, cache status, flags, attempts, inputs' and outputs' segment
#: (index in the chunk's `bases`; -1 none, -2 a URI of its own in `extras`), offset and length
#: in it (offset -1: the item's own document in that folder, `Chunk._packed_uri`),
#: started_at, finished_at, the current attempt's started_at (NaN: none)
ITEM = struct.Struct("<BBBBIhhqIqIddd")
#: an item's fields but the last (its current attempt's start), and that one at its offset
_NODE_PART = struct.Struct("<BBBBIhhqIqIdd")
_DOUBLE = struct.Struct("<d")
_ATTEMPT_STARTED_AT = _NODE_PART.size
_ITEM_SIZE = ITEM.size
HAS_ROWS = 1

PHASES = (
    "",
    "QUEUED",
    "RUNNING",
    "RETRYING",
    "SUCCEEDED",
    "FAILED",
    "SKIPPED",
    "ABORTED",
    "TIMED_OUT",
)
CACHE_STATUSES = ("", "disabled", "hit", "miss", "written")
_PHASE_CODE = {p: i for i, p in enumerate(PHASES)}
_CACHE_CODE = {c: i for i, c in enumerate(CACHE_STATUSES)}
#: a code whose text is in the item's `extras`
OTHER = 255
_NONE = math.nan
#: the `extras` keys that `Chunk.set_node` writes (in this order), the others it keeps
_NODE_EXTRAS = ("inputs_uri", "outputs_uri", "phase", "cache_status")
#: an item's own documents, by field (a URI `<base>/<index>/<name>`: see `Chunk._packed_uri`)
_DOCUMENTS = {"inputs_uri": "inputs.pb", "outputs_uri": "outputs.pb"}

COLUMNS = (
    "execution_id",
    "map_id",
    "chunk",
    "name",
    "task_name",
    "backend",
    "message",
    "bases",
    "extras",
    "state",
)
SELECT = f"SELECT {', '.join(COLUMNS)} FROM map_item_chunks"
_INSERT = (
    f"INSERT INTO map_item_chunks ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"
)
_UPDATE = (
    "UPDATE map_item_chunks SET backend = ?, message = ?, bases = ?, extras = ?, state = ? "
    "WHERE execution_id = ? AND map_id = ? AND chunk = ?"
)
_SELECT_ONE = f"{SELECT} WHERE execution_id = ? AND map_id = ? AND chunk = ?"
_SELECT_MAP = f"{SELECT} WHERE execution_id = ? AND map_id = ? ORDER BY chunk"
_ROWS_OF_MAP = (
    "SELECT node_id, phase, attempts, inputs_uri, outputs_uri, started_at, finished_at, "
    "cache_status FROM node_executions "
    "WHERE execution_id = ? AND kind = 'map_item' AND parent_id = ?"
)
_REQUEUE_ROWS = (
    "UPDATE node_executions SET phase = 'QUEUED', started_at = ?, finished_at = NULL, "
    "error = NULL, message = '' "
    "WHERE execution_id = ? AND kind = 'map_item' AND parent_id = ? AND phase != 'SUCCEEDED'"
)
_STOP_ROWS = (
    "UPDATE node_executions SET phase = ?, finished_at = ?, message = ? "
    "WHERE execution_id = ? AND kind = 'map_item' AND parent_id = ? AND phase = 'QUEUED'"
)

#: what runs the SQL: (sql, params) -> rows, and (sql, many params) -> None
Rows = Callable[[str, Sequence[Any]], list[Any]]
Many = Callable[[str, list[Sequence[Any]]], object]


def item_of(node_id: str) -> tuple[str, int] | None:
    """(map id, index) of a map item's node id (`n1[7]`), else None."""
    if not node_id.endswith("]"):
        return None
    map_id, bracket, index = node_id[:-1].rpartition("[")
    if not bracket or not index.isdecimal():
        return None
    return map_id, int(index)


def _time(value: float | None) -> float:
    return _NONE if value is None else value


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else value


@dataclass
class Chunk:
    """One chunk row, decoded enough to change items in place."""

    execution_id: str
    map_id: str
    chunk: int
    name: str
    task_name: str
    backend: str
    message: str
    bases: list[str]
    extras: dict[str, dict[str, str]]
    state: bytearray
    changed: bool = False
    new: bool = False
    _base_index: dict[str, int] = field(default_factory=dict)
    #: `bases` as JSON, kept until a base is added (most writes of a chunk add none)
    _bases_text: str | None = None
    #: by slot: the inputs URI packed last, and how (an item's start and end both give it)
    _inputs_packed: dict[int, tuple[str, tuple[int, int, int]]] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> Chunk:
        e, m, c, name, task, backend, message, bases, extras, state = row
        found = cls(
            str(e),
            str(m),
            int(c),
            str(name),
            str(task),
            str(backend or ""),
            str(message or ""),
            json.loads(bases or "[]"),
            json.loads(extras or "{}") if extras and extras != "{}" else {},
            bytearray(state),
        )
        found._base_index = {b: i for i, b in enumerate(found.bases)}
        found._bases_text = bases or "[]"
        return found

    def _texts(self) -> tuple[str, str]:
        """`bases` and `extras` as the row stores them."""
        if self._bases_text is None:
            self._bases_text = json.dumps(self.bases)
        extras = json.dumps(self.extras, separators=(",", ":")) if self.extras else "{}"
        return self._bases_text, extras

    def row(self) -> tuple[Any, ...]:
        return (
            self.execution_id,
            self.map_id,
            self.chunk,
            self.name,
            self.task_name,
            self.backend,
            self.message,
            *self._texts(),
            bytes(self.state),
        )

    def update_params(self) -> tuple[Any, ...]:
        return (
            self.backend,
            self.message,
            *self._texts(),
            bytes(self.state),
            self.execution_id,
            self.map_id,
            self.chunk,
        )

    @property
    def count(self) -> int:
        return len(self.state) // ITEM.size

    def first(self) -> int:
        return self.chunk * CHUNK

    # -- one item ---------------------------------------------------------------------

    def get(self, slot: int) -> tuple[Any, ...]:
        return ITEM.unpack_from(self.state, slot * ITEM.size)

    def put(self, slot: int, values: Sequence[Any]) -> None:
        ITEM.pack_into(self.state, slot * ITEM.size, *values)
        self.changed = True

    def _extra(self, slot: int, key: str, value: str | None) -> None:
        if value is None and not self.extras:
            return
        key_slot = str(slot)
        found = self.extras.get(key_slot)
        if value is None:
            if found is not None and key in found:
                del found[key]
                if not found:
                    del self.extras[key_slot]
            return
        self.extras.setdefault(key_slot, {})[key] = value

    def _text_uri(self, slot: int, key: str, base: int, offset: int, length: int) -> str:
        if base == -1:
            return ""
        if base == -2:
            return self.extras.get(str(slot), {}).get(key, "")
        if offset == -1:  # the item's own document (see `_packed_uri`)
            name = _DOCUMENTS[key]
            return f"{self.bases[base]}/{self.chunk * CHUNK + slot}/{name}"
        return f"{self.bases[base]}#{offset}+{length}"

    def _base(self, base: str) -> int | None:
        index = self._base_index.get(base)
        if index is None and len(self.bases) < 1 << 15:
            index = self._base_index[base] = len(self.bases)
            self.bases.append(base)
            self._bases_text = None
        return index

    def _packed_uri(self, uri: str, slot: int, key: str) -> tuple[int, int, int]:
        """(base, offset, length) of the URI of item `slot`'s document `key`: a pack
        record's (`...pack#<offset>+<length>`) with its segment stored once per chunk in
        `bases`; the item's own document (`<base>/<index>/outputs.pb`, where the engine
        puts a running item's outputs, as out-of-process backends write them) with its
        folder stored once and an offset of -1; (-1, 0, 0) for none; (-2, 0, 0) for a URI
        of another form (kept in `extras`)."""
        if not uri:
            return -1, 0, 0
        base, _, frag = uri.partition("#")
        offset, plus, length = frag.partition("+")
        if plus and offset.isdigit() and length.isdigit() and int(length) < 1 << 32:
            index = self._base(base)
            if index is not None:
                return index, int(offset), int(length)
        elif not frag:
            own = f"/{self.chunk * CHUNK + slot}/{_DOCUMENTS[key]}"
            if uri.endswith(own):
                index = self._base(uri[: -len(own)])
                if index is not None:
                    return index, -1, 0
        return -2, 0, 0

    def set_node(self, slot: int, rec: NodeRecord) -> bool:
        """The packed state of an item from its node record; whether the item has rows.

        (The engine's hot path: a map's item is set twice per run, started and ended; what
        does not fit the packed fields goes in `extras`, looked at only when it must.)"""
        state = self.state
        at = slot * _ITEM_SIZE
        phase = _PHASE_CODE.get(rec.phase, OTHER)
        cache = _CACHE_CODE.get(rec.cache_status, OTHER)
        inputs_uri = rec.inputs_uri
        packed = self._inputs_packed.get(slot)
        if packed is not None and packed[0] == inputs_uri:
            in_base, in_off, in_len = packed[1]
        else:
            packed_uri = self._packed_uri(inputs_uri, slot, "inputs_uri")
            in_base, in_off, in_len = packed_uri
            if in_base >= 0:
                self._inputs_packed[slot] = (inputs_uri, packed_uri)
        out_base, out_off, out_len = self._packed_uri(rec.outputs_uri, slot, "outputs_uri")
        extras = self.extras
        key = (
            str(slot)
            if extras or in_base == -2 or out_base == -2 or OTHER in (phase, cache)
            else ""
        )
        if key:
            kept = {k: v for k, v in extras.get(key, {}).items() if k not in _NODE_EXTRAS}
            for name, own, value in (
                ("inputs_uri", in_base == -2, rec.inputs_uri),
                ("outputs_uri", out_base == -2, rec.outputs_uri),
                ("phase", phase == OTHER, rec.phase),
                ("cache_status", cache == OTHER, rec.cache_status),
            ):
                if own:
                    kept[name] = value
            if kept:
                extras[key] = kept
            else:
                extras.pop(key, None)
        flags = state[at + 3]
        _NODE_PART.pack_into(
            state,
            at,
            phase,
            state[at + 1],
            cache,
            flags,
            rec.attempts,
            in_base,
            out_base,
            in_off,
            in_len,
            out_off,
            out_len,
            _NONE if rec.started_at is None else rec.started_at,
            _NONE if rec.finished_at is None else rec.finished_at,
        )
        self.changed = True
        return bool(flags & HAS_ROWS)

    def set_attempt(self, slot: int, rec: AttemptRecord) -> bool:
        """The packed state of an item's current attempt; whether the item has rows."""
        state = self.state
        at = slot * _ITEM_SIZE
        code = _PHASE_CODE.get(rec.phase, OTHER)
        if code == OTHER or self.extras:
            self._extra(slot, "attempt_phase", rec.phase if code == OTHER else None)
        state[at + 1] = code
        _DOUBLE.pack_into(state, at + _ATTEMPT_STARTED_AT, _time(rec.started_at))
        if rec.backend:
            self.backend = rec.backend
        self.changed = True
        return bool(state[at + 3] & HAS_ROWS)

    def mark_rows(self, slot: int) -> None:
        values = list(self.get(slot))
        if not values[3] & HAS_ROWS:
            values[3] |= HAS_ROWS
            self.put(slot, values)

    def has_rows(self, slot: int) -> bool:
        return bool(self.state[slot * ITEM.size + 3] & HAS_ROWS)

    def phase(self, slot: int) -> str:
        code = self.state[slot * ITEM.size]
        return self.extras.get(str(slot), {}).get("phase", "") if code == OTHER else PHASES[code]

    # -- materialized -----------------------------------------------------------------

    def outputs_uri(self, slot: int, values: Sequence[Any]) -> str:
        return self._text_uri(slot, "outputs_uri", values[6], values[9], values[10])

    def node(self, slot: int, values: Sequence[Any] | None = None) -> NodeRecord:
        """Item `slot` as a node record (no error; the message of a bulk stop)."""
        v = self.get(slot) if values is None else values
        index = self.first() + slot
        extra = self.extras.get(str(slot), {})
        phase = extra.get("phase", "") if v[0] == OTHER else PHASES[v[0]]
        return NodeRecord(
            execution_id=self.execution_id,
            node_id=f"{self.map_id}[{index}]",
            kind="map_item",
            phase=phase,
            name=f"{self.name}[{index}]",
            parent_id=self.map_id,
            task_name=self.task_name,
            attempts=v[4],
            inputs_uri=self._text_uri(slot, "inputs_uri", v[5], v[7], v[8]),
            outputs_uri=self._text_uri(slot, "outputs_uri", v[6], v[9], v[10]),
            started_at=_opt(v[11]),
            finished_at=_opt(v[12]),
            message=self.message if phase in ("SKIPPED", "ABORTED") and self.message else "",
            cache_status=extra.get("cache_status", "") if v[2] == OTHER else CACHE_STATUSES[v[2]],
        )

    def attempt(self, slot: int, values: Sequence[Any] | None = None) -> AttemptRecord | None:
        """Item `slot`'s current attempt (None before its first), as packed."""
        v = self.get(slot) if values is None else values
        if v[4] <= 0:
            return None
        extra = self.extras.get(str(slot), {})
        phase = extra.get("attempt_phase", "") if v[1] == OTHER else PHASES[v[1]]
        return AttemptRecord(
            execution_id=self.execution_id,
            node_id=f"{self.map_id}[{self.first() + slot}]",
            attempt=v[4],
            phase=phase or "RUNNING",
            started_at=_opt(v[13]),
            finished_at=_opt(v[12]) if phase not in ("", "RUNNING") else None,
            backend=self.backend,
        )

    def items(self) -> Iterator[tuple[int, tuple[Any, ...]]]:
        """(slot, packed values) of every item."""
        return enumerate(ITEM.iter_unpack(self.state))


def new_chunk(
    execution_id: str, map_id: str, chunk: int, name: str, task_name: str, count: int, at: float
) -> Chunk:
    """A chunk of `count` items, all QUEUED since `at`."""
    queued = ITEM.pack(_PHASE_CODE["QUEUED"], 0, 0, 0, 0, -1, -1, 0, 0, 0, 0, at, _NONE, _NONE)
    return Chunk(
        execution_id, map_id, chunk, name, task_name, "", "", [], {}, bytearray(queued * count)
    )


class ItemWriter:
    """The items' part of one transaction (`Batch`'s map item records), on any connection:
    chunks read when first touched (or taken from `cache`), changed in memory, written once
    at the end (`flush`, which hands them to `cache`)."""

    def __init__(self, rows: Rows, many: Many, cache: ChunkCache | None = None) -> None:
        self._rows = rows
        self._many = many
        self._cache = cache
        self._chunks: dict[tuple[str, str, int], Chunk | None] = {}
        #: by node id: its execution and what `_slot` found (a node's record and its
        #: attempt's, in one transaction, look the item up once)
        self._slots: dict[str, tuple[str, tuple[Chunk, int] | None]] = {}

    def chunk(self, execution_id: str, map_id: str, index: int) -> Chunk | None:
        key = (execution_id, map_id, index)
        if key not in self._chunks:
            cached = self._cache.get(key) if self._cache is not None else None
            if cached is not None:
                self._chunks[key] = cached
            else:
                found = self._rows(_SELECT_ONE, key)
                self._chunks[key] = Chunk.from_row(found[0]) if found else None
        return self._chunks[key]

    def _slot(self, execution_id: str, node_id: str) -> tuple[Chunk, int] | None:
        seen = self._slots.get(node_id)
        if seen is not None and seen[0] == execution_id:
            return seen[1]
        found = self._find(execution_id, node_id)
        self._slots[node_id] = (execution_id, found)
        return found

    def _find(self, execution_id: str, node_id: str) -> tuple[Chunk, int] | None:
        # (item_of, inlined)
        if not node_id.endswith("]"):
            return None
        map_id, bracket, text = node_id[:-1].rpartition("[")
        if not bracket or not text.isdecimal():
            return None
        index, slot = divmod(int(text), CHUNK)
        key = (execution_id, map_id, index)
        chunk = self._chunks.get(key)
        if chunk is None:
            chunk = self.chunk(*key)
        if chunk is None or slot >= len(chunk.state) // _ITEM_SIZE:
            return None
        return chunk, slot

    def queue(
        self, execution_id: str, map_id: str, name: str, task_name: str, count: int, at: float
    ) -> None:
        """A map's `count` items QUEUED: new chunks, or (an execution resumed) every item
        not SUCCEEDED set QUEUED again, its attempts kept. Items recorded as rows before
        the chunks existed are carried into them."""
        self._slots.clear()  # its chunks are new or replaced
        found_rows = self._rows(_SELECT_MAP, (execution_id, map_id))
        existing = {c.chunk: c for c in map(Chunk.from_row, found_rows)}
        rows = self._rows(_ROWS_OF_MAP, (execution_id, map_id)) if not existing else []
        fresh: list[Chunk] = []
        succeeded = _PHASE_CODE["SUCCEEDED"]
        queued = _PHASE_CODE["QUEUED"]
        for index in range((count + CHUNK - 1) // CHUNK):
            size = min(CHUNK, count - index * CHUNK)
            found = existing.get(index)
            if found is None:
                fresh.append(new_chunk(execution_id, map_id, index, name, task_name, size, at))
                continue
            for slot, v in found.items():
                if v[0] != succeeded:
                    found.put(slot, (queued, *v[1:11], at, _NONE, v[13]))
                    found._extra(slot, "phase", None)
            self._chunks[(execution_id, map_id, index)] = found
        by_index = {c.chunk: c for c in fresh}
        for node_id, phase, attempts, inputs_uri, outputs_uri, started, finished, cache in rows:
            item = item_of(str(node_id))
            chunk = by_index.get(item[1] // CHUNK) if item is not None else None
            if item is None or chunk is None or item[1] % CHUNK >= chunk.count:
                continue
            slot = item[1] % CHUNK
            done = phase == "SUCCEEDED"
            chunk.set_node(
                slot,
                NodeRecord(
                    execution_id,
                    str(node_id),
                    "map_item",
                    "SUCCEEDED" if done else "QUEUED",
                    attempts=int(attempts or 0),
                    inputs_uri=str(inputs_uri or ""),
                    outputs_uri=str(outputs_uri or ""),
                    started_at=started if done else at,
                    finished_at=finished if done else None,
                    cache_status=str(cache or ""),
                ),
            )
            chunk.mark_rows(slot)
        if fresh:
            self._many(_INSERT, [c.row() for c in fresh])
        for c in fresh:
            c.changed = False
            self._chunks[(execution_id, map_id, c.chunk)] = c
        self._many(_REQUEUE_ROWS, [(at, execution_id, map_id)])

    def stop(self, execution_id: str, map_id: str, phase: str, at: float, message: str) -> None:
        """Every item of the map still QUEUED, now `phase` (SKIPPED, ABORTED)."""
        self._slots.clear()  # its chunks may be read here
        queued = _PHASE_CODE["QUEUED"]
        code = _PHASE_CODE[phase]
        for row in self._rows(_SELECT_MAP, (execution_id, map_id)):
            key = (execution_id, map_id, int(row[2]))
            found = self._chunks.get(key) or Chunk.from_row(row)
            self._chunks[key] = found
            for slot, v in found.items():
                if v[0] == queued:
                    found.put(slot, (code, *v[1:12], at, v[13]))
            if found.changed:
                found.message = message
        self._many(_STOP_ROWS, [(phase, at, message, execution_id, map_id)])

    def nodes(self, records: Iterable[NodeRecord]) -> tuple[list[NodeRecord], list[NodeRecord]]:
        """Map items' node records packed: (the records to write as rows too, the others)."""
        rows: list[NodeRecord] = []
        other: list[NodeRecord] = []
        for rec in records:
            if rec.kind != "map_item":
                other.append(rec)
                continue
            found = self._slot(rec.execution_id, rec.node_id)
            if found is None:
                rows.append(rec)
                continue
            chunk, slot = found
            if chunk.set_node(slot, rec) or rec.error or rec.message:
                chunk.mark_rows(slot)
                rows.append(rec)
        return rows, other

    def attempts(
        self, records: Iterable[AttemptRecord]
    ) -> tuple[list[NodeRecord], list[AttemptRecord]]:
        """Attempt records packed where they can be: (node rows to make where missing, the
        attempt records to write as rows). An attempt with an error or log links, a retry,
        and any attempt of an item that has rows, is a row."""
        missing: list[NodeRecord] = []
        rows: list[AttemptRecord] = []
        for rec in records:
            found = self._slot(rec.execution_id, rec.node_id)
            if found is None:
                rows.append(rec)
                continue
            chunk, slot = found
            had = chunk.set_attempt(slot, rec)
            if had or rec.error or rec.log_links or rec.attempt != 1:
                if not had:
                    chunk.mark_rows(slot)
                    missing.append(chunk.node(slot))
                rows.append(rec)
        return missing, rows

    def mark_rows(self, node_ids: Iterable[tuple[str, str]]) -> None:
        """Items that got rows elsewhere (a handle recorded): every later write writes them."""
        for execution_id, node_id in node_ids:
            found = self._slot(execution_id, node_id)
            if found is not None:
                found[0].mark_rows(found[1])

    def flush(self) -> None:
        changed = [c for c in self._chunks.values() if c is not None and c.changed]
        if changed:
            self._many(_UPDATE, [c.update_params() for c in changed])
        for c in changed:
            c.changed = False
        if self._cache is not None:
            self._cache.keep(self._chunks)


# -- reads ----------------------------------------------------------------------------


def materialize(
    chunks: Iterable[Sequence[Any]],
    rows: Iterable[NodeRecord],
) -> list[NodeRecord]:
    """Map items as node records: each packed item, with the error and message of its row
    when it has one; items only in rows (recorded before the chunks) as they are."""
    by_id = {r.node_id: r for r in rows}
    out: list[NodeRecord] = []
    for raw in chunks:
        chunk = Chunk.from_row(raw)
        for slot, v in chunk.items():
            rec = chunk.node(slot, v)
            if v[3] & HAS_ROWS:
                row = by_id.pop(rec.node_id, None)
                if row is not None:
                    rec.error, rec.message = row.error, row.message or rec.message
            else:
                by_id.pop(rec.node_id, None)
            out.append(rec)
    out.extend(by_id.values())
    return out


def packed_attempts(chunks: Iterable[Sequence[Any]], phase: str | None) -> list[AttemptRecord]:
    """The current attempt of each packed item without rows (in `phase` if given)."""
    out: list[AttemptRecord] = []
    code = _PHASE_CODE.get(phase or "", OTHER) if phase is not None else None
    for raw in chunks:
        chunk = Chunk.from_row(raw)
        state = chunk.state
        if code is not None and code != OTHER and code not in state[1 :: ITEM.size]:
            continue
        for slot, v in chunk.items():
            if v[3] & HAS_ROWS or (code is not None and v[1] != code and code != OTHER):
                continue
            found = chunk.attempt(slot, v)
            if found is not None and (phase is None or found.phase == phase):
                out.append(found)
    return out
