"""Reads the console's views need beyond `MetadataStore`: the nodes of an execution but map
items (its workflow's nodes, and those of its sub-workflows and branches), map items counted
by phase and paged (from their chunk rows: `metadata/_items.py`), and one node with its
attempts."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskfabric.metadata import AttemptRecord, MetadataStore, NodeRecord
from taskfabric.metadata._schema import cache_entries, node_executions
from taskfabric.metadata._store import _decode, reads

#: The kinds of node that are not a map's items (engine/_state.py): listed, so that the
#: database seeks them in ix_node_executions_kind instead of reading every item's row.
NODE_KINDS = ("task", "map", "branch", "workflow")
ITEM = "map_item"


def graph_nodes(engine: Engine, execution_id: str) -> list[NodeRecord]:
    """Every node of an execution but map items: the workflow's own nodes and those of its
    sub-workflows and branches (as many as its templates declare, whatever the data)."""
    t = node_executions
    q = sa.select(t).where(t.c.execution_id == execution_id, t.c.kind.in_(NODE_KINDS))
    with reads(engine).connect() as conn:
        return [_decode(NodeRecord, r) for r in conn.execute(q).all()]


def item_counts(store: MetadataStore, execution_id: str) -> dict[str, dict[str, int]]:
    """map node id -> {phase: number of its items in it}."""
    return store.item_counts(execution_id)


def node(store: MetadataStore, execution_id: str, node_id: str) -> NodeRecord | None:
    return store.node(execution_id, node_id)


def children(
    store: MetadataStore,
    execution_id: str,
    parent_id: str,
    *,
    items: bool,
    phases: Sequence[str] = (),
    after: str = "",
    limit: int,
) -> list[NodeRecord]:
    """A page of a node's children in order (a map's items by index: `n1[2]` before
    `n1[10]`), those in `phases` only if given, after the child `after` (keyset: the page
    costs the same wherever it is). `items`: a map's items (packed: materialized from their
    chunks), else the nodes of a sub-workflow or branch."""
    if items:
        packed = store.item_page(execution_id, parent_id, phases=phases, after=after, limit=limit)
        if packed is not None:
            return packed
    t = node_executions
    kinds = [ITEM] if items else list(NODE_KINDS)
    # Ids of one parent's children share their prefix: shorter first, then by text, is
    # by index (n1[9] < n1[10]), and both are in the row the index points at.
    size = sa.func.length(t.c.node_id)
    q = sa.select(t).where(
        t.c.execution_id == execution_id, t.c.kind.in_(kinds), t.c.parent_id == parent_id
    )
    if phases:
        q = q.where(t.c.phase.in_(list(phases)))
    if after:
        q = q.where(sa.or_(size > len(after), sa.and_(size == len(after), t.c.node_id > after)))
    q = q.order_by(size, t.c.node_id).limit(limit)
    with reads(store.engine).connect() as conn:
        return [_decode(NodeRecord, r) for r in conn.execute(q).all()]


def child_counts(
    store: MetadataStore, execution_id: str, parent_id: str, *, items: bool
) -> dict[str, int]:
    """{phase: number of the node's children in it}."""
    if items:
        return store.item_counts(execution_id).get(parent_id, {})
    t = node_executions
    q = (
        sa.select(t.c.phase, sa.func.count())
        .where(
            t.c.execution_id == execution_id,
            t.c.kind.in_(list(NODE_KINDS)),
            t.c.parent_id == parent_id,
        )
        .group_by(t.c.phase)
    )
    with reads(store.engine).connect() as conn:
        return {str(phase): int(count) for phase, count in conn.execute(q).all()}


def attempts(store: MetadataStore, execution_id: str, node_id: str) -> list[AttemptRecord]:
    return store.attempts(execution_id, node_id)


def cache_source(engine: Engine, outputs_uri: str) -> str:
    """The execution whose result a cache hit served (its entry points at the same
    outputs), or '' when the entry is gone."""
    t = cache_entries
    q = sa.select(t.c.execution_id).where(t.c.outputs_uri == outputs_uri).limit(1)
    with reads(engine).connect() as conn:
        found = conn.execute(q).scalar()
    return str(found or "")
