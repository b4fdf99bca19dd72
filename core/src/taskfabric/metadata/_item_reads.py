"""Reads of map items, materialized from their chunk rows (`_items`) and from the rows of
the items that have some: what `MetadataStore.nodes`, `attempts` and `prior_items` and the
console's queries return for a map's items."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from taskfabric.lazy import lazy_module
from taskfabric.metadata._items import CHUNK, COLUMNS, HAS_ROWS, ITEM, PHASES, Chunk, item_of
from taskfabric.metadata._records import NodeRecord, PriorItem

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import Connection

    from taskfabric.metadata import _schema as s
else:
    sa = lazy_module("sqlalchemy", __name__, "sa")
    s = lazy_module("taskfabric.metadata._schema", __name__, "s")


def _select() -> Any:
    t = s.map_item_chunks
    return sa.select(*(t.c[c] for c in COLUMNS))


def chunk_rows(
    conn: Connection,
    execution_id: str,
    map_id: str | None = None,
    *,
    start: int = 0,
    batch: int = 256,
) -> Iterator[Sequence[Any]]:
    """The execution's chunk rows (of one map, from chunk `start` on), in order, read
    `batch` rows a query (keyset: no server-side cursor, any connection)."""
    t = s.map_item_chunks
    last_map, last_chunk = ("", -1) if map_id is None else (map_id, start - 1)
    while True:
        q = _select().where(t.c.execution_id == execution_id)
        if map_id is not None:
            q = q.where(t.c.map_id == map_id, t.c.chunk > last_chunk)
        else:
            q = q.where(
                (t.c.map_id > last_map) | ((t.c.map_id == last_map) & (t.c.chunk > last_chunk))
            )
        rows = [tuple(r) for r in conn.execute(q.order_by(t.c.map_id, t.c.chunk).limit(batch))]
        yield from rows
        if len(rows) < batch:
            return
        last_map, last_chunk = str(rows[-1][1]), int(rows[-1][2])


def chunk_row(conn: Connection, execution_id: str, map_id: str, chunk: int) -> Sequence[Any] | None:
    t = s.map_item_chunks
    row = conn.execute(
        _select().where(t.c.execution_id == execution_id, t.c.map_id == map_id, t.c.chunk == chunk)
    ).first()
    return None if row is None else tuple(row)


def packed_maps(conn: Connection, execution_id: str) -> set[str]:
    t = s.map_item_chunks
    q = sa.select(t.c.map_id).where(t.c.execution_id == execution_id, t.c.chunk == 0)
    return {str(m) for m in conn.execute(q).scalars()}


def with_rows(node: NodeRecord, row: NodeRecord | None) -> NodeRecord:
    """A packed item's record with the error and message of its row."""
    if row is not None:
        node.error = row.error
        node.message = row.message or node.message
    return node


def phase_counts(conn: Connection, execution_id: str) -> dict[str, Counter[str]]:
    """map id -> its packed items counted by phase."""
    found: dict[str, Counter[str]] = {}
    for raw in chunk_rows(conn, execution_id):
        chunk = Chunk.from_row(raw)
        counts = found.setdefault(chunk.map_id, Counter())
        codes = Counter(chunk.state[0 :: ITEM.size])
        for code, n in codes.items():
            if code < len(PHASES):
                counts[PHASES[code]] += n
            else:
                for slot in range(chunk.count):
                    if chunk.state[slot * ITEM.size] == code:
                        counts[chunk.phase(slot)] += 1
    return found


def page(
    conn: Connection,
    execution_id: str,
    map_id: str,
    *,
    phases: Sequence[str],
    after: str,
    limit: int,
    rows_of: Any,
) -> list[NodeRecord]:
    """A page of a packed map's items by index, in `phases` if given, after item `after`;
    `rows_of(node_ids)` reads the rows of the items that have some."""
    after_item = item_of(after) if after else None
    first = after_item[1] + 1 if after_item is not None else 0
    wanted = set(phases)
    out: list[NodeRecord] = []
    flagged: list[NodeRecord] = []
    for raw in chunk_rows(conn, execution_id, map_id, start=first // CHUNK):
        chunk = Chunk.from_row(raw)
        for slot, values in chunk.items():
            if chunk.first() + slot < first:
                continue
            rec = chunk.node(slot, values)
            if wanted and rec.phase not in wanted:
                continue
            out.append(rec)
            if values[3] & HAS_ROWS:
                flagged.append(rec)
            if len(out) >= limit:
                break
        if len(out) >= limit:
            break
    if flagged:
        rows = {r.node_id: r for r in rows_of([r.node_id for r in flagged])}
        for rec in flagged:
            with_rows(rec, rows.get(rec.node_id))
    return out


def prior(conn: Connection, execution_id: str) -> Iterator[PriorItem]:
    """What a resume uses of the packed items: those that succeeded or had an attempt (but
    items with rows: `prior_items` reads those from their rows)."""
    succeeded = PHASES.index("SUCCEEDED")
    for raw in chunk_rows(conn, execution_id):
        chunk = Chunk.from_row(raw)
        for slot, values in chunk.items():
            if not values[3] & HAS_ROWS and (values[4] > 0 or values[0] == succeeded):
                code = values[0]
                yield PriorItem(
                    f"{chunk.map_id}[{chunk.first() + slot}]",
                    chunk.phase(slot) if code >= len(PHASES) else PHASES[code],
                    values[4],
                    chunk.outputs_uri(slot, values),
                )
