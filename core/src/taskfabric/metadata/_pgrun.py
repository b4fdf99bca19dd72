"""The run path's metadata calls on PostgreSQL, through psycopg on the pool's connections.

An engine process of a server spends most of its CPU on a few calls made for every
execution: its claim, the writes of its transitions (`MetadataStore.apply`), its attempts'
handles and the cancel check. Through SQLAlchemy each statement paid for its compilation
(a cache look-up with its key), parameter processing and result set-up, more than psycopg
and PostgreSQL took for it. Here those calls run SQL written once (as `_lite` does on
SQLite), on a connection of the same pool (`MetadataStore.engine`, so the same budget):

- a write is one transaction: its statements, then COMMIT (psycopg's BEGIN before them);
- a read, and the claim (one statement), run in autocommit: no BEGIN and no COMMIT;
- the claim is one statement: the queued rows locked (skipping those another engine is
  claiming), turned RUNNING, their 'started by' events inserted, and whether each already
  has node rows (it never ran: `fresh`), all in one round trip.

Errors are psycopg's (`psycopg.OperationalError` when the server is out of reach).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

from taskfabric.metadata import _lite
from taskfabric.metadata._items import ItemWriter
from taskfabric.metadata._lite import EXECUTION_COLUMNS, _decode_row, _rows, encode
from taskfabric.metadata._records import AttemptRecord, ExecutionRecord, NodeRecord

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


def _pg(sql: str) -> str:
    """`_lite`'s SQL with psycopg's placeholders."""
    return sql.replace("?", "%s")


_UPSERT_NODE = _pg(_lite._UPSERT_NODE)
_UPSERT_ATTEMPT = _pg(_lite._UPSERT_ATTEMPT)
_INSERT_NODE_IF_MISSING = _pg(_lite._INSERT_NODE_IF_MISSING)
_UPSERT_HANDLE = _pg(_lite._UPSERT_HANDLE)
#: an attempt's row with its handle (a start committed with the handle its backend recorded)
_UPSERT_ATTEMPT_AND_HANDLE = _pg(
    _lite._upsert(
        "node_attempts", _lite.ATTEMPT_COLUMNS, ("execution_id", "node_id", "attempt"), ()
    )
)
_INSERT_EVENT = _pg(_lite._INSERT_EVENT)
_INSERT_EXECUTION = _pg(_lite._INSERT_EXECUTION)
_SELECT_EXECUTION = _lite._SELECT_EXECUTION
_CANCEL_REQUESTED = (
    "SELECT message FROM events WHERE execution_id = %s "
    "AND phase = 'CANCEL_REQUESTED' AND at >= %s LIMIT 1"
)
_RETURNED = ", ".join(f"e.{c}" for c in EXECUTION_COLUMNS)
# MATERIALIZED: the rows picked once (an IN (subquery with LIMIT) may be evaluated again per
# row and so claim more than the limit); SKIP LOCKED: those another engine is claiming are
# left to it. The events' CTE runs though nothing reads it.
_CLAIM = f"""
WITH picked AS MATERIALIZED (
    SELECT id FROM executions WHERE phase = 'QUEUED' AND NOT (id = ANY(%(skip)s))
    ORDER BY created_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE executions AS e
    SET owner = %(owner)s, heartbeat_at = %(now)s, phase = 'RUNNING', started_at = %(now)s
    FROM picked WHERE e.id = picked.id
    RETURNING {_RETURNED}
), started AS (
    INSERT INTO events (execution_id, node_id, attempt, phase, at, message)
    SELECT id, '', 0, 'RUNNING', %(now)s, %(message)s FROM claimed
)
SELECT claimed.*, EXISTS (
    SELECT 1 FROM node_executions AS n WHERE n.execution_id = claimed.id
) FROM claimed ORDER BY claimed.created_at
"""


class PgRunPath:
    """The calls of `MetadataStore` that every execution makes, on PostgreSQL."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._updates: dict[tuple[str, ...], str] = {}

    @contextmanager
    def _connection(self, *, autocommit: bool = False) -> Iterator[Any]:
        """A psycopg connection of the pool (checked as every checkout is: `_connections`)."""
        fairy = self._engine.raw_connection()
        try:
            conn: Any = fairy.driver_connection
            if autocommit:
                conn.autocommit = True
            try:
                yield conn
            finally:
                if autocommit and not conn.closed:
                    try:
                        conn.autocommit = False
                    except Exception:
                        conn.close()  # never back in the pool in autocommit: it is replaced
        finally:
            fairy.close()

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor in a transaction committed on exit (rolled back on an error)."""
        with self._connection() as conn:
            try:
                with conn.cursor() as cur:
                    yield cur
                conn.commit()
            except BaseException:
                if not conn.closed:
                    try:
                        conn.rollback()
                    except Exception:
                        conn.close()  # in doubt: the pool replaces it
                raise

    # -- reads ----------------------------------------------------------------------------

    def _execution_where(self, where: str, params: Sequence[Any]) -> ExecutionRecord | None:
        with self._connection(autocommit=True) as conn:
            row = conn.execute(f"{_SELECT_EXECUTION} WHERE {where}", params).fetchone()
        return None if row is None else _decode_row(ExecutionRecord, EXECUTION_COLUMNS, row)

    def get_execution(self, execution_id: str) -> ExecutionRecord | None:
        return self._execution_where("id = %s", (execution_id,))

    def find_by_name(self, project: str, domain: str, name: str) -> ExecutionRecord | None:
        return self._execution_where(
            "project = %s AND domain = %s AND name = %s", (project, domain, name)
        )

    def cancel_requested(self, execution_id: str, since: float) -> str | None:
        with self._connection(autocommit=True) as conn:
            row = conn.execute(_CANCEL_REQUESTED, (execution_id, since)).fetchone()
        return None if row is None else str(row[0] or "requested")

    # -- writes ---------------------------------------------------------------------------

    def create_execution(self, rec: ExecutionRecord) -> None:
        """Insert the execution's row (one statement, in autocommit); a name taken raises
        `psycopg.IntegrityError`."""
        row = encode(asdict(rec))
        with self._connection(autocommit=True) as conn:
            conn.execute(_INSERT_EXECUTION, [row[c] for c in EXECUTION_COLUMNS])

    def _update_sql(self, columns: tuple[str, ...]) -> str:
        sql = self._updates.get(columns)
        if sql is None:
            unknown = set(columns) - set(EXECUTION_COLUMNS)
            if unknown:
                raise ValueError(f"executions have no column {sorted(unknown)}")
            sets = ", ".join(f"{c} = %s" for c in columns)
            sql = self._updates[columns] = f"UPDATE executions SET {sets} WHERE id = %s"
        return sql

    def apply(self, batch: Any) -> None:
        """`MetadataStore.apply` of a batch of executions' updates, node and attempt rows,
        handles and events (what the run path records), in the same order of statements."""
        with self._transaction() as cur:
            for execution_id, values in batch.executions.items():
                row = encode(dict(values))
                cur.execute(self._update_sql(tuple(row)), [*row.values(), execution_id])
            # map items packed in their chunks (`_items`); an item with a handle has rows
            items = _item_writer(cur)
            if batch.handles:
                items.mark_rows((n.execution_id, n.node_id) for n, _ in batch.handles)
            item_rows, nodes = items.nodes(batch.nodes.values())
            nodes.extend(item_rows)
            if nodes:
                _many(cur, _UPSERT_NODE, _rows(nodes, _lite.NODE_COLUMNS))
            missing, attempt_rows = items.attempts(batch.attempts.values())
            if missing:
                _many(cur, _INSERT_NODE_IF_MISSING, _rows(missing, _lite.NODE_COLUMNS))
            written = {(n.execution_id, n.node_id) for n in [*nodes, *missing]}
            # A handle of an attempt whose row (and node's) the batch writes goes on that row:
            # one statement instead of three (its node if missing, the row, the handle).
            attempts = {(a.execution_id, a.node_id, a.attempt): a for a in attempt_rows}
            handled: dict[tuple[str, str, int], AttemptRecord] = {}
            handles: list[tuple[NodeRecord, AttemptRecord]] = []
            for node, attempt in batch.handles:
                key = (attempt.execution_id, attempt.node_id, attempt.attempt)
                found = attempts.get(key)
                if found is not None and (node.execution_id, node.node_id) in written:
                    handled[key] = replace(found, handle=attempt.handle)
                else:
                    handles.append((node, attempt))
            if handled:
                rows = _rows(handled.values(), _lite.ATTEMPT_COLUMNS)
                _many(cur, _UPSERT_ATTEMPT_AND_HANDLE, rows)
            rest = [a for k, a in attempts.items() if k not in handled]
            if rest:
                _many(cur, _UPSERT_ATTEMPT, _rows(rest, _lite.ATTEMPT_COLUMNS))
            if handles:
                self._write_handles(cur, handles)
            items.flush()
            if batch.events:
                _many(cur, _INSERT_EVENT, _rows(batch.events, _lite.EVENT_COLUMNS))

    def write_handles(self, handles: Sequence[tuple[NodeRecord, AttemptRecord]]) -> None:
        """`MetadataStore.record_attempt_handle`, in a transaction of its own."""
        with self._transaction() as cur:
            items = _item_writer(cur)
            items.mark_rows((n.execution_id, n.node_id) for n, _ in handles)
            items.flush()
            self._write_handles(cur, handles)

    @staticmethod
    def _write_handles(cur: Any, handles: Sequence[tuple[NodeRecord, AttemptRecord]]) -> None:
        nodes = _rows([n for n, _ in handles], _lite.NODE_COLUMNS)
        _many(cur, _INSERT_NODE_IF_MISSING, nodes)
        _many(cur, _UPSERT_HANDLE, _rows([a for _, a in handles], _lite.ATTEMPT_COLUMNS))

    def claim_queued(
        self, owner: str, *, now: float, limit: int, skip: Sequence[str]
    ) -> list[tuple[ExecutionRecord, bool]]:
        """`MetadataStore.claim_queued` in one statement (see the module docstring)."""
        params = {
            "owner": owner,
            "now": now,
            "limit": limit,
            "skip": list(skip),
            "message": f"started by {owner}",
        }
        with self._connection(autocommit=True) as conn:
            rows = conn.execute(_CLAIM, params).fetchall()
        width = len(EXECUTION_COLUMNS)
        return [
            (_decode_row(ExecutionRecord, EXECUTION_COLUMNS, row[:width]), not row[width])
            for row in rows
        ]


def _item_writer(cur: Any) -> ItemWriter:
    """The map items' writer of the transaction of `cur` (`_items`' SQL with `%s`)."""
    return ItemWriter(
        lambda sql, p: list(cur.execute(_pg(sql), tuple(p)).fetchall()),
        lambda sql, ps: _many(cur, _pg(sql), [tuple(x) for x in ps]) if ps else None,
    )


def _many(cur: Any, sql: str, rows: list[tuple[Any, ...]]) -> None:
    """One row: `execute` (psycopg's `executemany` sets up a pipeline for it)."""
    if len(rows) == 1:
        cur.execute(sql, rows[0])
    else:
        cur.executemany(sql, rows)
