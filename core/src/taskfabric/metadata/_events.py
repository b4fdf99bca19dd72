"""An execution's events: the rows of `events`, and the transitions of its task nodes that
their node and attempt rows alone record (`Recorder.node` writes no event for them).

A task node's plain transitions are read from its rows, with the time each row holds:

- its first QUEUED (attempt 0) at the node row's `started_at`, when it has a first attempt
  and neither a QUEUED event of attempt 0 nor a RUNNING of attempt 1 is recorded (an
  execution written before recorded both; the engine now drops the QUEUED event when the
  attempt starts before the next commit; a node queued and stopped before any attempt, or
  whose first QUEUED came after a wait, keeps its event). A node run again by a resume
  was queued again (that QUEUED is an event, and its row's `started_at` is the new run's):
  its first QUEUED is given at its first attempt's start, which follows it within the
  commit window (`[engine] commit_seconds`), so among the other nodes' events of that
  window it may come a little late;
- each attempt's RUNNING at the attempt row's `started_at`, unless a RUNNING event of that
  attempt is recorded;
- its SUCCEEDED, with the node row's message (a cache hit's names the execution it came
  from), at the row's `finished_at`.

A transition also recorded as a plain event (an execution written before the engine stopped
writing them) is given once. Events come in the order they were recorded, the transitions
read from rows among them by time. A map item's start and success are neither (its row's
phase and times tell them)."""

from __future__ import annotations

import heapq
import operator
from typing import TYPE_CHECKING, Any

from taskfabric.lazy import lazy_module
from taskfabric.metadata._records import EventRecord

if TYPE_CHECKING:
    import sqlalchemy as sa

    from taskfabric.metadata import _schema as s
else:  # imported on first use, as in _store.py: a run on SQLite reads no events
    sa = lazy_module("sqlalchemy", __name__, "sa")
    s = lazy_module("taskfabric.metadata._schema", __name__, "s")

# transitions of one instant in the order the engine makes them
_RANK = {"QUEUED": 0, "RUNNING": 1, "SUCCEEDED": 2}


def read_events(conn: Any, execution_id: str) -> list[EventRecord]:
    """`MetadataStore.events`, read through the SQLAlchemy connection `conn`."""
    t, n, a = s.events, s.node_executions, s.node_attempts
    found = [
        EventRecord(
            execution_id, r.node_id, r.attempt, r.phase, r.at, r.message if r.message else ""
        )
        for r in conn.execute(
            sa.select(t.c.node_id, t.c.attempt, t.c.phase, t.c.at, t.c.message)
            .where(t.c.execution_id == execution_id)
            .order_by(t.c.id)
        )
    ]
    tasks = conn.execute(
        sa.select(
            n.c.node_id, n.c.phase, n.c.attempts, n.c.started_at, n.c.finished_at, n.c.message
        ).where(n.c.execution_id == execution_id, n.c.kind == "task")
    ).all()
    if not tasks:
        return found
    starts = conn.execute(
        sa.select(a.c.node_id, a.c.attempt, a.c.started_at)
        .join(n, sa.and_(n.c.execution_id == a.c.execution_id, n.c.node_id == a.c.node_id))
        .where(a.c.execution_id == execution_id, n.c.kind == "task")
    ).all()
    queued = {e.node_id for e in found if e.phase == "QUEUED" and e.attempt == 0}
    running = {(e.node_id, e.attempt) for e in found if e.phase == "RUNNING"}
    succeeded = {e.node_id for e in found if e.phase == "SUCCEEDED"}
    read: list[EventRecord] = []
    for node_id, attempt, at in starts:
        if (node_id, attempt) not in running:
            read.append(EventRecord(execution_id, node_id, attempt, "RUNNING", at or 0.0))
    first = {node_id: at for node_id, attempt, at in starts if attempt == 1}
    for node_id, phase, attempts, started, finished, message in tasks:
        if node_id in first and node_id not in queued and (node_id, 1) not in running:
            # (a node run again by a resume started again: its first attempt's start bounds
            # when it was first queued)
            at = min((t for t in (started, first[node_id]) if t is not None), default=0.0)
            read.append(EventRecord(execution_id, node_id, 0, "QUEUED", at))
        if phase == "SUCCEEDED" and node_id not in succeeded:
            read.append(
                EventRecord(
                    execution_id, node_id, attempts, "SUCCEEDED", finished or 0.0, message or ""
                )
            )
    if not read:
        return found
    read.sort(key=lambda e: (e.at, _RANK[e.phase]))
    return list(heapq.merge(found, read, key=operator.attrgetter("at")))
