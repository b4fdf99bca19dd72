"""Reads and one write the server needs beyond `MetadataStore`: executions limited to a
token's projects, the projects and domains in use, and putting an execution back in the queue.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import fields
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from taskfabric.metadata import ExecutionRecord
from taskfabric.metadata._schema import events, executions
from taskfabric.metadata._store import reads
from taskfabric.registry._schema import launch_plan_states, registry_entities

_FIELDS = {f.name for f in fields(ExecutionRecord)}
#: Phases an execution ends in without success: `recover` puts these back in the queue.
RECOVERABLE = ("FAILED", "ABORTED", "TIMED_OUT")


def _record(row: Any) -> ExecutionRecord:
    data = {k: v for k, v in row._mapping.items() if k in _FIELDS}
    for key in ("code", "error"):
        if data.get(key) is not None:
            data[key] = json.loads(data[key])
    data["code"] = data.get("code") or {}
    return ExecutionRecord(**data)


#: The columns an execution is listed with (`views.execution`): not its code location, value
#: URIs or cluster, whose reading (a JSON document per row) cost a list of hundreds half its time.
_LISTED = [
    executions.c[name]
    for name in (
        "id",
        "project",
        "domain",
        "name",
        "workflow_name",
        "workflow_version",
        "phase",
        "created_at",
        "started_at",
        "finished_at",
        "owner",
        "heartbeat_at",
        "launch_plan",
        "scheduled_at",
        "error",
    )
]
_LISTED_NAMES = tuple(c.name for c in _LISTED)


def _listed(row: Any) -> ExecutionRecord:
    data = dict(zip(_LISTED_NAMES, row, strict=True))
    if data["error"] is not None:
        data["error"] = json.loads(data["error"])
    return ExecutionRecord(**data)


def _scoped(q: Any, column: Any, projects: frozenset[str] | None) -> Any:
    return q if projects is None else q.where(column.in_(sorted(projects)))


def list_executions(
    engine: Engine,
    *,
    projects: frozenset[str] | None,
    project: str | None = None,
    domain: str | None = None,
    phases: Iterable[str] = (),
    workflow: str | None = None,
    launch_plan: str | None = None,
    limit: int = 50,
    offset: int = 0,
    before: str | None = None,
) -> list[ExecutionRecord]:
    """Newest first, as listed (without their code location, value URIs and cluster);
    `projects` None means every project. `before`: only those listed after that execution (a
    keyset: the next page costs what the first does, however far)."""
    t = executions
    # The project is compared as `project || ''` so that the database walks
    # ix_executions_created newest first and stops after `limit` rows: on the bare column
    # SQLite picks ix_executions_launch_plan (project, ...) and sorts every execution of the
    # project first (30 ms instead of 1 ms at 10,000 executions; bench/bench_console.py).
    # PostgreSQL walks the index newest first with the bare column (0.14 ms at 10,000
    # executions), and reads them all with the concatenation (2.2 ms): SQLite only.
    listed = t.c.project.op("||")("") if engine.dialect.name == "sqlite" else t.c.project
    q = _scoped(sa.select(*_LISTED), listed, projects)
    if project:
        q = q.where(listed == project)
    if domain:
        q = q.where(t.c.domain == domain)
    phases = [p.upper() for p in phases]
    if phases:
        q = q.where(t.c.phase.in_(phases))
    if workflow:
        q = q.where(t.c.workflow_name.contains(workflow, autoescape=True))
    if launch_plan:
        q = q.where(t.c.launch_plan.startswith(f"{launch_plan}:", autoescape=True))
    q = q.order_by(t.c.created_at.desc(), t.c.id).limit(limit).offset(offset)
    with reads(engine).connect() as conn:
        if before:
            seen = _scoped(sa.select(t.c.created_at).where(t.c.id == before), t.c.project, projects)
            at = conn.execute(seen).scalar()
            if at is None:
                return []
            q = q.where(sa.or_(t.c.created_at < at, sa.and_(t.c.created_at == at, t.c.id > before)))
        return [_listed(r) for r in conn.execute(q).all()]


def find_executions(
    engine: Engine, ref: str, *, projects: frozenset[str] | None, limit: int = 5
) -> list[ExecutionRecord]:
    """Executions whose id is `ref`, or whose id or name starts with it, newest first."""
    t = executions
    with reads(engine).connect() as conn:
        q = _scoped(sa.select(t).where(t.c.id == ref), t.c.project, projects)
        exact = conn.execute(q).all()
        if exact:
            return [_record(r) for r in exact]
        q = _scoped(
            sa.select(t).where(
                t.c.id.startswith(ref, autoescape=True) | t.c.name.startswith(ref, autoescape=True)
            ),
            t.c.project,
            projects,
        )
        rows = conn.execute(q.order_by(t.c.created_at.desc()).limit(limit)).all()
    named = [r for r in rows if r.name == ref]
    return [_record(r) for r in (named or rows)]


#: The distinct (project, domain) of the executions on PostgreSQL: a seek per pair in
#: uq_executions_name (a loose index scan), not a read of every execution (0.3-1 ms instead
#: of 6-12 ms at 10,000 executions here; SQLite's DISTINCT is faster as it is).
_EXECUTION_SCOPES = sa.text(
    """
WITH RECURSIVE s(project, domain) AS (
  SELECT project, domain FROM (
    SELECT project, domain FROM executions ORDER BY project, domain LIMIT 1) AS first
  UNION ALL
  SELECT
    (SELECT e.project FROM executions e WHERE (e.project, e.domain) > (s.project, s.domain)
     ORDER BY e.project, e.domain LIMIT 1),
    (SELECT e.domain FROM executions e WHERE (e.project, e.domain) > (s.project, s.domain)
     ORDER BY e.project, e.domain LIMIT 1)
  FROM s WHERE s.project IS NOT NULL
)
SELECT project, domain FROM s WHERE project IS NOT NULL
"""
)


def scopes(engine: Engine) -> set[tuple[str, str]]:
    """Every (project, domain) with executions, registered entities or launch plan states."""
    found: set[tuple[str, str]] = set()
    with reads(engine).connect() as conn:
        for table in (executions, registry_entities, launch_plan_states):
            q: Any = sa.select(table.c.project, table.c.domain).distinct()
            if table is executions and engine.dialect.name == "postgresql":
                q = _EXECUTION_SCOPES
            found.update((r[0], r[1]) for r in conn.execute(q).all())
    return found


def requeue(engine: Engine, execution_id: str, *, now: float, message: str) -> bool:
    """Put an execution that ended without success back in the queue, where a worker resumes
    it (succeeded nodes keep their outputs). Atomic: False if it is not in such a phase."""
    t = executions
    with engine.begin() as conn:
        done = conn.execute(
            t.update()
            .where(t.c.id == execution_id, t.c.phase.in_(RECOVERABLE))
            .values(phase="QUEUED", finished_at=None, error=None, owner="", heartbeat_at=None)
        ).rowcount
        if done:
            conn.execute(
                events.insert().values(
                    execution_id=execution_id,
                    node_id="",
                    attempt=0,
                    phase="QUEUED",
                    at=now,
                    message=message,
                )
            )
    return bool(done)
