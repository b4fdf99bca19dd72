"""Records of the metadata database as API models."""

from __future__ import annotations

import re
from typing import Any

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.engine import Engine
from taskfabric.errors import ValueTooLargeError
from taskfabric.metadata import AttemptRecord, ExecutionRecord, NodeRecord
from taskfabric.server import _models as m
from taskfabric.server._inputs import literal_type_json, values_json
from taskfabric.tasklogs import attempt_log
from taskfabric.types import literal_to_display, literal_to_json, type_str


def execution(rec: ExecutionRecord) -> m.Execution:
    error = None
    if rec.error:
        error = m.ExecutionError(
            **{k: str(rec.error.get(k, "") or "") for k in ("kind", "code", "message", "node_id")}
        )
    return m.Execution(
        id=rec.id,
        project=rec.project,
        domain=rec.domain,
        name=rec.name,
        workflow=rec.workflow_name,
        workflow_version=rec.workflow_version,
        phase=rec.phase,
        created_at=rec.created_at,
        started_at=rec.started_at,
        finished_at=rec.finished_at,
        owner=rec.owner,
        heartbeat_at=rec.heartbeat_at,
        launch_plan=rec.launch_plan,
        scheduled_at=rec.scheduled_at,
        error=error,
    )


def parameters(interface: interface_pb2.TypedInterface) -> tuple[list[m.Parameter], ...]:
    inputs = [
        m.Parameter(
            name=p.name,
            type=type_str(p.type),
            literal_type=literal_type_json(p.type),
            required=not p.HasField("default"),
            default=literal_to_json(p.default) if p.HasField("default") else None,
        )
        for p in interface.inputs
    ]
    outputs = [
        m.Parameter(name=p.name, type=type_str(p.type), literal_type=literal_type_json(p.type))
        for p in interface.outputs
    ]
    return inputs, outputs


def node_sort_key(node_id: str) -> list[Any]:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", node_id)]


def _display_map(m_: types_pb2.LiteralMap | None, *, items: int, chars: int) -> dict[str, str]:
    if m_ is None:
        return {}
    return {
        k: literal_to_display(m_.literals[k], max_items=items, max_chars=chars)
        for k in sorted(m_.literals)
    }


def _attempt(a: AttemptRecord) -> m.Attempt:
    return m.Attempt(
        attempt=a.attempt,
        phase=a.phase,
        started_at=a.started_at,
        finished_at=a.finished_at,
        error=a.error,
        backend=a.backend,
        log_links=a.log_links,
    )


def execution_detail(
    engine: Engine,
    rec: ExecutionRecord,
    *,
    values: bool = True,
    events: bool = False,
    display: bool = False,
) -> m.ExecutionDetail:
    """What `taskfabric executions show` shows: the execution, its values, every node (those
    not started yet too) with its attempts, and optionally the events. `values`: the outputs
    of succeeded nodes (map items left out); `display`: values rendered for people too."""
    meta = engine.metadata
    nodes = meta.nodes(rec.id)
    by_node: dict[str, list[AttemptRecord]] = {}
    for a in meta.attempts(rec.id):
        by_node.setdefault(a.node_id, []).append(a)
    compiled = engine.load_compiled(rec)
    recorded = {n.node_id for n in nodes}
    for node in compiled.primary.nodes:
        if node.id not in recorded:
            kind = node.WhichOneof("target") or "task"
            nodes.append(NodeRecord(rec.id, node.id, kind, "NOT STARTED", name=node.name))
    nodes.sort(key=lambda n: node_sort_key(n.node_id))
    interface = compiled.primary.interface
    input_names = [p.name for p in interface.inputs]
    output_names = [p.name for p in interface.outputs]
    omitted: dict[str, str] = {}
    inputs = _read(engine, rec.inputs_uri, "inputs", omitted)
    outputs = _read(engine, rec.outputs_uri, "outputs", omitted)
    shown = m.Display(
        inputs=_display_map(inputs, items=8, chars=100),
        outputs=_display_map(outputs, items=8, chars=100),
    )
    views = []
    for n in nodes:
        node_outputs = None
        if values and n.phase == "SUCCEEDED" and n.kind != "map_item":
            found = _read(engine, n.outputs_uri, n.node_id, omitted)
            node_outputs = values_json(found)
            if display and n.node_id in omitted:
                shown.nodes[n.node_id] = "(too large to show here)"
            if display and found is not None:
                shown.nodes[n.node_id] = ", ".join(
                    f"{k}={v}" for k, v in _display_map(found, items=5, chars=60).items()
                )
        views.append(
            m.Node(
                node_id=n.node_id,
                name=n.name,
                kind=n.kind,
                parent_id=n.parent_id,
                task_name=n.task_name,
                phase=n.phase,
                attempts=n.attempts,
                cache_status=n.cache_status,
                started_at=n.started_at,
                finished_at=n.finished_at,
                error=n.error,
                message=n.message,
                attempt_details=[_attempt(a) for a in by_node.get(n.node_id, [])],
                outputs=node_outputs,
            )
        )
    return m.ExecutionDetail(
        execution=execution(rec),
        input_names=input_names,
        output_names=output_names,
        inputs=values_json(inputs, input_names) if inputs is not None else None,
        outputs=values_json(outputs, output_names) if outputs is not None else None,
        nodes=views,
        events=[
            m.Event(node_id=e.node_id, attempt=e.attempt, phase=e.phase, at=e.at, message=e.message)
            for e in (meta.events(rec.id) if events else [])
        ],
        display=shown if display else None,
        omitted=omitted,
    )


def _read(
    engine: Engine, uri: str, where: str, omitted: dict[str, str]
) -> types_pb2.LiteralMap | None:
    """A stored document for a view of many; one over `[server] max_value_bytes` is left
    out (noted in `omitted`) rather than failing the whole view."""
    try:
        return engine.read_literals(uri)
    except ValueTooLargeError as exc:
        omitted[where] = str(exc)
        return None


def task_log(
    engine: Engine, rec: ExecutionRecord, node_id: str, attempt: int | None, offset: int
) -> m.TaskLog:
    """A piece of a node's attempt log (raises `LogNotFoundError`)."""
    found = attempt_log(
        engine.metadata, engine.store, engine.work_root, rec.id, node_id, attempt, offset
    )
    return m.TaskLog(
        execution_id=rec.id,
        node_id=node_id,
        attempt=found.attempt,
        attempts=found.attempts,
        phase=found.phase,
        source=found.chunk.source,
        offset=found.chunk.offset,
        next_offset=found.chunk.next_offset,
        text=found.text,
        complete=found.complete,
    )
