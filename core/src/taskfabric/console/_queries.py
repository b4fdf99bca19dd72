"""Reads the console's views need beyond `MetadataStore`: the top-level nodes of an execution
with their children counted by phase (a 10,000-item map is one row per phase, not 10,000
records), and one node with its attempts."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskfabric.metadata import AttemptRecord, NodeRecord
from taskfabric.metadata._schema import node_attempts, node_executions
from taskfabric.metadata._store import _decode


def top_nodes(engine: Engine, execution_id: str) -> list[NodeRecord]:
    """The nodes of an execution that have no parent (the workflow's own nodes)."""
    t = node_executions
    q = sa.select(t).where(t.c.execution_id == execution_id, t.c.parent_id == "")
    with engine.connect() as conn:
        return [_decode(NodeRecord, r) for r in conn.execute(q).all()]


def child_counts(engine: Engine, execution_id: str) -> dict[str, dict[str, int]]:
    """parent node id -> {phase: number of its children (map items, sub-workflow nodes)},
    for the top-level parents. Nested children count under their top-level ancestor."""
    t = node_executions
    q = (
        sa.select(t.c.parent_id, t.c.phase, sa.func.count())
        .where(t.c.execution_id == execution_id, t.c.parent_id != "")
        .group_by(t.c.parent_id, t.c.phase)
    )
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for parent, phase, count in conn.execute(q).all():
            top = top_id(str(parent))
            phases = found.setdefault(top, {})
            phases[str(phase)] = phases.get(str(phase), 0) + int(count)
    return found


def top_id(node_id: str) -> str:
    """The top-level ancestor of a node id: `n1` of `n1[3]` and of `n1/n0`."""
    for i, ch in enumerate(node_id):
        if ch in "[/":
            return node_id[:i]
    return node_id


def node(engine: Engine, execution_id: str, node_id: str) -> NodeRecord | None:
    t = node_executions
    q = sa.select(t).where(t.c.execution_id == execution_id, t.c.node_id == node_id)
    with engine.connect() as conn:
        row = conn.execute(q).first()
    return None if row is None else _decode(NodeRecord, row)


def children(engine: Engine, execution_id: str, parent_id: str, *, limit: int) -> list[NodeRecord]:
    """The first `limit` children of a node (map items in no particular order)."""
    t = node_executions
    q = (
        sa.select(t)
        .where(t.c.execution_id == execution_id, t.c.parent_id == parent_id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [_decode(NodeRecord, r) for r in conn.execute(q).all()]


def attempts(engine: Engine, execution_id: str, node_id: str) -> list[AttemptRecord]:
    t = node_attempts
    q = (
        sa.select(t)
        .where(t.c.execution_id == execution_id, t.c.node_id == node_id)
        .order_by(t.c.attempt)
    )
    with engine.connect() as conn:
        return [_decode(AttemptRecord, r) for r in conn.execute(q).all()]


def count_children(engine: Engine, execution_id: str, parent_id: str) -> int:
    t = node_executions
    q = sa.select(sa.func.count()).where(
        t.c.execution_id == execution_id, t.c.parent_id == parent_id
    )
    with engine.connect() as conn:
        return int(conn.execute(q).scalar_one())
