"""Reads the console's views need beyond `MetadataStore`: the nodes of an execution but map
items (its workflow's nodes, and those of its sub-workflows and branches), map items counted
by phase (a 10,000-item map is one row per phase, not 10,000 records), and one node with its
attempts."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskfabric.metadata import AttemptRecord, NodeRecord
from taskfabric.metadata._schema import cache_entries, node_attempts, node_executions
from taskfabric.metadata._store import _decode


def graph_nodes(engine: Engine, execution_id: str) -> list[NodeRecord]:
    """Every node of an execution but map items: the workflow's own nodes and those of its
    sub-workflows and branches (as many as its templates declare, whatever the data)."""
    t = node_executions
    q = sa.select(t).where(t.c.execution_id == execution_id, t.c.kind != "map_item")
    with engine.connect() as conn:
        return [_decode(NodeRecord, r) for r in conn.execute(q).all()]


def item_counts(engine: Engine, execution_id: str) -> dict[str, dict[str, int]]:
    """map node id -> {phase: number of its items in it}, counted in the database."""
    t = node_executions
    q = (
        sa.select(t.c.parent_id, t.c.phase, sa.func.count())
        .where(t.c.execution_id == execution_id, t.c.kind == "map_item")
        .group_by(t.c.parent_id, t.c.phase)
    )
    found: dict[str, dict[str, int]] = {}
    with engine.connect() as conn:
        for parent, phase, count in conn.execute(q).all():
            found.setdefault(str(parent), {})[str(phase)] = int(count)
    return found


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


def cache_source(engine: Engine, outputs_uri: str) -> str:
    """The execution whose result a cache hit served (its entry points at the same
    outputs), or '' when the entry is gone."""
    t = cache_entries
    q = sa.select(t.c.execution_id).where(t.c.outputs_uri == outputs_uri).limit(1)
    with engine.connect() as conn:
        found = conn.execute(q).scalar()
    return str(found or "")
