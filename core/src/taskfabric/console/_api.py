"""API routes the console's views need beyond the CLI's: an execution's graph, one node with
its attempts and typed values, the pools, a diff between two registered versions, and a
launch with the command line's text inputs. Same tokens, same rules: a token sees only its
projects (404 elsewhere), and its role decides what it may change (403).
"""

from __future__ import annotations

import collections
import difflib
import os
import secrets
import socket
import threading
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from google.protobuf import text_format

from taskfabric.console import _graph as cg
from taskfabric.console import _models as cm
from taskfabric.console import _queries as cq
from taskfabric.core.v1 import interface_pb2, types_pb2, workflow_pb2
from taskfabric.errors import TaskfabricError, ValueTooLargeError
from taskfabric.registry import EntityNotFoundError, normalize_kind
from taskfabric.server import _models as m
from taskfabric.server import _views as views
from taskfabric.server._app import (
    API_PREFIX,
    DomainPath,
    NamePath,
    Plane,
    ProjectPath,
    RefPath,
    Scope,
    Who,
)
from taskfabric.server._inputs import json_to_literal, text_to_literal, values_json
from taskfabric.server._names import SCOPE_PATTERN
from taskfabric.server._service import ControlPlane, Invalid, NotFound
from taskfabric.server._uploads import Resolver
from taskfabric.types import type_str

#: Children listed with a node (map items); the graph counts them all by phase.
MAX_CHILDREN = 200

router = APIRouter(prefix=API_PREFIX, tags=["console"])

#: Compiled workflows of recent executions by URI (written once at launch, never changed):
#: a graph polled every second reads its workflow from the store once, not each time.
_COMPILED: collections.OrderedDict[tuple[int, str], workflow_pb2.CompiledWorkflow] = (
    collections.OrderedDict()
)
_COMPILED_MAX = 64
_COMPILED_LOCK = threading.Lock()


def _compiled(plane: ControlPlane, rec: Any) -> workflow_pb2.CompiledWorkflow:
    key = (id(plane.engine), str(rec.workflow_uri))
    with _COMPILED_LOCK:
        found = _COMPILED.get(key)
        if found is not None:
            _COMPILED.move_to_end(key)
            return found
    found = plane.engine.load_compiled(rec)
    with _COMPILED_LOCK:
        _COMPILED[key] = found
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return found


def _values(plane: ControlPlane, uri: str) -> types_pb2.LiteralMap | None:
    """A stored document for a page that shows more than it: one over `[server]
    max_value_bytes` is left out (its own value routes answer 413 with the reason)."""
    try:
        return plane.engine.read_literals(uri)
    except ValueTooLargeError:
        return None


def _node_model(n: Any, attempts: list[Any] | None = None) -> m.Node:
    return m.Node(
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
        attempt_details=[
            m.Attempt(
                attempt=a.attempt,
                phase=a.phase,
                started_at=a.started_at,
                finished_at=a.finished_at,
                error=a.error,
                backend=a.backend,
                log_links=a.log_links,
            )
            for a in attempts or []
        ],
    )


@router.get(
    "/executions/{ref}/graph",
    summary="An execution's workflow as a graph, nodes with phases",
    description="The workflow's nodes in declared order with the nodes each waits for and "
    "their phases; a map's items counted by phase (never listed, so a map of 10,000 items is "
    "as fast as one of 10); a sub-workflow's nodes and a branch's cases inside their node "
    "(`nodes`), counted by phase too.",
)
def graph(
    plane: Plane,
    who: Who,
    ref: RefPath,
    values: Annotated[bool, Query(description="The execution's inputs and outputs too.")] = True,
) -> cm.Graph:
    rec = plane._execution(who, ref)
    engine = plane.metadata.engine
    compiled = _compiled(plane, rec)
    nodes = cg.graph_nodes(
        compiled, cq.graph_nodes(engine, rec.id), cq.item_counts(plane.metadata, rec.id)
    )
    drawn = cm.Graph(execution=views.execution(rec), nodes=nodes)
    if values:
        interface = compiled.primary.interface
        order = [p.name for p in interface.inputs]
        inputs = values_json(_values(plane, rec.inputs_uri), order)
        outputs = values_json(_values(plane, rec.outputs_uri))
        drawn.inputs = _parameters({p.name: type_str(p.type) for p in interface.inputs}, inputs)
        drawn.outputs = _parameters({p.name: type_str(p.type) for p in interface.outputs}, outputs)
    return drawn


def _types(
    compiled: workflow_pb2.CompiledWorkflow, node: workflow_pb2.Node | None, item: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """Input and output types (as people read them) of a declared node or a map's item."""
    if node is None:
        return {}, {}
    target = node.WhichOneof("target")
    interface = interface_pb2.TypedInterface()
    if target in ("task", "map"):
        task_id = node.task.task_id if target == "task" else node.map.task_id
        task = next((t for t in compiled.tasks if t.id == task_id), None)
        if task is not None:
            interface = task.interface
    elif target == "workflow":
        sub = next(
            (t for t in compiled.subworkflows if t.id.name == node.workflow.workflow_id.name),
            None,
        )
        if sub is not None:
            interface = sub.interface
    inputs = {p.name: type_str(p.type) for p in interface.inputs}
    outputs = {p.name: type_str(p.type) for p in node.interface.outputs}
    if target == "map" and not item:
        for name in node.map.mapped_inputs:
            if name in inputs:
                inputs[name] = f"list[{inputs[name]}]"
    elif target == "map":
        outputs = {p.name: type_str(p.type) for p in interface.outputs}
    return inputs, outputs


def _parameters(types: dict[str, str], values: dict[str, Any] | None) -> list[cm.Parameter]:
    values = values or {}
    names = list(types) + [n for n in values if n not in types]
    return [
        cm.Parameter(name=n, type=types.get(n, ""), value=values.get(n), set=n in values)
        for n in names
    ]


@router.get(
    "/executions/{ref}/nodes/{node_id:path}/detail",
    summary="One node: attempts, typed inputs and outputs, first items",
)
def node_detail(
    request: Request,
    plane: Plane,
    who: Who,
    ref: RefPath,
    node_id: Annotated[str, Path(max_length=1024)],
    items: Annotated[int, Query(ge=0, le=MAX_CHILDREN)] = 50,
) -> cm.NodeDetail:
    rec = plane._execution(who, ref)
    engine = plane.metadata.engine
    compiled = _compiled(plane, rec)
    declared, item = cg.declared(compiled, node_id)
    input_types, output_types = _types(compiled, declared, item)
    found = cq.node(plane.metadata, rec.id, node_id)
    if found is None:
        if declared is None or item:
            raise NotFound(f"execution {rec.id} has no node '{node_id}'")
        node = m.Node(
            node_id=node_id,
            name=declared.name or declared.id,
            kind=declared.WhichOneof("target") or "task",
            parent_id=node_id.rpartition("/")[0],
            phase=cg.NOT_STARTED,
        )
        return cm.NodeDetail(
            node=node,
            inputs=_parameters(input_types, None),
            outputs=_parameters(output_types, None),
        )
    # Its own row, not `plane.node_data`, which reads every node of the execution.
    inputs = values_json(_values(plane, found.inputs_uri)) or None
    outputs = values_json(_values(plane, found.outputs_uri)) or None
    mapped = found.kind == "map"
    kids = cq.children(plane.metadata, rec.id, node_id, items=mapped, limit=items)
    counts = cq.child_counts(plane.metadata, rec.id, node_id, items=mapped) if kids else {}
    waits = []
    if found.phase == "QUEUED" and found.kind in ("task", "map_item"):
        # Read now, not the message written when it queued: the place moves as others go.
        for status in _pools(request, plane).status():
            for w in status.waiters:
                if w.holder.execution_id == rec.id and w.holder.node_id == node_id:
                    waits.append(
                        cm.PoolWait(
                            pool=status.spec.name,
                            position=w.position,
                            queue=len(status.waiters),
                            weight=w.weight,
                            enqueued_at=w.enqueued_at,
                        )
                    )
    source = ""
    if found.cache_status == "hit" and found.outputs_uri:
        source = cq.cache_source(engine, found.outputs_uri)
    return cm.NodeDetail(
        node=_node_model(found, cq.attempts(plane.metadata, rec.id, node_id)),
        inputs=_parameters(input_types, inputs),
        outputs=_parameters(output_types, outputs),
        children=[_node_model(k) for k in kids],
        children_total=sum(counts.values()),
        children_counts=counts,
        children_next=kids[-1].node_id if len(kids) == items and items else "",
        pool_waits=waits,
        cache_source=source,
    )


@router.get(
    "/executions/{ref}/nodes/{node_id:path}/items",
    summary="A page of a node's map items (or nodes), by index, filtered by phase",
    description="A map's items in index order (a sub-workflow's or branch's nodes for "
    "those), `limit` at a time after the item `after` (the `next_after` of the previous "
    "page: a keyset, so the 200th page costs what the first does), only those in `phase` "
    "if given. `counts` holds every item counted by phase; `total` those the filter keeps.",
)
def node_items(
    plane: Plane,
    who: Who,
    ref: RefPath,
    node_id: Annotated[str, Path(max_length=1024)],
    phase: Annotated[list[str] | None, Query(description="Only items in these phases.")] = None,
    after: Annotated[
        str, Query(max_length=1024, description="The last item of the previous page.")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_CHILDREN)] = 50,
) -> cm.Children:
    rec = plane._execution(who, ref)
    found = cq.node(plane.metadata, rec.id, node_id)
    if found is None:
        compiled = _compiled(plane, rec)
        if cg.declared(compiled, node_id)[0] is None:
            raise NotFound(f"execution {rec.id} has no node '{node_id}'")
        return cm.Children(node_id=node_id)
    if after and not after.startswith(node_id):
        raise Invalid(f"after={after!r} is not an item of node '{node_id}'")
    mapped = found.kind == "map"
    phases = sorted({p.upper() for p in phase or ()})
    page = cq.children(
        plane.metadata, rec.id, node_id, items=mapped, phases=phases, after=after, limit=limit + 1
    )
    counts = cq.child_counts(plane.metadata, rec.id, node_id, items=mapped)
    more = len(page) > limit
    page = page[:limit]
    return cm.Children(
        node_id=node_id,
        items=[_node_model(k) for k in page],
        counts=counts,
        total=sum(c for p, c in counts.items() if not phases or p in phases),
        next_after=page[-1].node_id if more else "",
    )


@router.get(
    Scope + "/entities/{kind}/{name}/diff",
    summary="The difference between two registered versions",
)
def diff(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    kind: str,
    name: NamePath,
    old: Annotated[str, Query(pattern=SCOPE_PATTERN, description="The older version.")],
    new: Annotated[str, Query(pattern=SCOPE_PATTERN, description="The newer version.")],
) -> cm.Diff:
    plane._see(who, project)
    try:
        kind = normalize_kind(kind)
    except TaskfabricError as exc:
        raise Invalid(str(exc)) from None
    reg = plane.registry

    def template(version: str) -> Any:
        if kind == "task":
            return reg.get_task(project, domain, name, version)
        if kind == "workflow":
            return reg.get_workflow(project, domain, name, version)[0]
        return reg.get_launch_plan(project, domain, name, version)

    try:
        a, b = template(old), template(new)
    except EntityNotFoundError as exc:
        raise NotFound(str(exc)) from None
    lines = difflib.unified_diff(
        text_format.MessageToString(a).splitlines(keepends=True),
        text_format.MessageToString(b).splitlines(keepends=True),
        fromfile=f"{name} {old}",
        tofile=f"{name} {new}",
    )
    return cm.Diff(kind=kind, name=name, old=old, new=new, diff="".join(lines))


def _text_inputs(
    interface: interface_pb2.TypedInterface,
    body: cm.TextLaunchRequest,
    what: str,
    uploads: Resolver,
) -> dict[str, types_pb2.Literal]:
    from taskfabric.server import InputError

    declared = {p.name: p for p in interface.inputs}
    found = {}
    for name, value in [*body.inputs.items(), *body.uploads.items()]:
        param = declared.get(name)
        if param is None:
            expected = ", ".join(f"{p.name}: {type_str(p.type)}" for p in interface.inputs)
            raise InputError(name, f"{what} has no such input; its inputs are: {expected}")
        if name in body.uploads:
            found[name] = json_to_literal({"upload": value}, param.type, name=name, uploads=uploads)
        else:
            found[name] = text_to_literal(value, param.type, name=name)
    return found


@router.post(
    Scope + "/executions/from_text",
    status_code=201,
    summary="Launch with inputs as command-line texts (launcher)",
    description="Like POST .../executions, but each input is the text `taskfabric launch "
    "--input NAME=TEXT` takes, parsed by the same rules and answered with the same messages "
    "(a 422 names the input). A file or dataframe input is `uploads: {name: ref}` of an "
    "upload made first (POST .../uploads).",
    responses={200: {"model": m.Launched, "description": "An execution of that name existed."}},
)
def launch_text(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    body: cm.TextLaunchRequest,
    response: Response,
) -> m.Launched:
    uploads = Resolver(
        plane.engine.store,
        project,
        domain,
        plane.engine.work_root / "uploads" / secrets.token_hex(8),
    )
    try:
        launched = plane.launch_literals(
            who,
            project,
            domain,
            workflow=body.workflow,
            launch_plan=body.launch_plan,
            version=body.version,
            inputs=lambda interface, what: _text_inputs(interface, body, what, uploads),
            name=body.name,
        )
    finally:
        uploads.close()
    if not launched.created:
        response.status_code = 200
    return launched


class _Pools:
    """One PoolManager per app, called from one thread at a time."""

    def __init__(self, plane: ControlPlane) -> None:
        from taskfabric.pools import PoolManager, specs_from_config

        self.specs = specs_from_config(plane.config)
        self.lock = threading.Lock()
        self.manager = (
            PoolManager(
                plane.metadata.engine,
                self.specs,
                owner=f"{socket.gethostname()}:{os.getpid()}:console",
            )
            if self.specs
            else None
        )

    def status(self) -> list[Any]:
        if self.manager is None:
            return []
        with self.lock:
            return self.manager.status()

    def pushbacks(self, limit: int) -> dict[str, list[Any]]:
        if self.manager is None:
            return {}
        with self.lock:
            return dict(self.manager.pushbacks(limit=limit))


def _pools(request: Request, plane: ControlPlane) -> _Pools:
    found = getattr(request.app.state, "console_pools", None)
    if found is None:
        found = request.app.state.console_pools = _Pools(plane)
    assert isinstance(found, _Pools)
    return found


@router.get(
    "/pools",
    summary="Resource pools: slots in use, rates, shares, queues",
    description="Every configured pool, with its most recent pushbacks. Holders, waiters "
    "and pushbacks of projects the token cannot see are counted but not named; caps and "
    "weights of such projects are left out.",
)
def pools(
    request: Request,
    plane: Plane,
    who: Who,
    pushbacks: Annotated[int, Query(ge=0, le=50, description="Recent pushbacks per pool.")] = 10,
) -> list[cm.Pool]:
    found = []
    known = _pools(request, plane)
    recent = known.pushbacks(pushbacks) if pushbacks else {}
    for status in known.status():
        spec = status.spec
        holders = [h for h in status.holders if who.sees(h.holder.project)]
        waiters = [w for w in status.waiters if who.sees(w.holder.project)]
        found.append(
            cm.Pool(
                name=spec.name,
                slots=spec.slots,
                in_use=status.in_use,
                rate_per_second=spec.rate,
                burst=spec.bucket if spec.rate is not None else None,
                tokens=status.tokens,
                paused_until=status.paused_until,
                lease_ttl=spec.lease_ttl,
                project_caps={k: v for k, v in spec.project_caps.items() if who.sees(k)},
                project_weights={k: v for k, v in spec.project_weights.items() if who.sees(k)},
                domain_caps=dict(spec.domain_caps),
                holders=[
                    cm.PoolHolder(
                        execution_id=h.holder.execution_id,
                        node_id=h.holder.node_id,
                        attempt=h.holder.attempt,
                        project=h.holder.project,
                        domain=h.holder.domain,
                        weight=h.weight,
                        acquired_at=h.acquired_at,
                        expires_at=h.expires_at,
                    )
                    for h in holders
                ],
                waiters=[
                    cm.PoolWaiter(
                        position=w.position,
                        execution_id=w.holder.execution_id,
                        node_id=w.holder.node_id,
                        project=w.holder.project,
                        domain=w.holder.domain,
                        weight=w.weight,
                        priority=w.priority,
                        enqueued_at=w.enqueued_at,
                    )
                    for w in waiters
                ],
                hidden_holders=len(status.holders) - len(holders),
                hidden_waiters=len(status.waiters) - len(waiters),
                pushbacks=[_pushback(who, b) for b in recent.get(spec.name, [])],
            )
        )
    return found


def _pushback(who: Any, b: Any) -> cm.PoolPushback:
    found = cm.PoolPushback(at=b.at, seconds=b.seconds, paused_until=b.paused_until)
    if b.holder is None:
        return found
    if not who.sees(b.holder.project):
        found.hidden = True
        return found
    found.execution_id = b.holder.execution_id
    found.node_id = b.holder.node_id
    found.project = b.holder.project
    found.domain = b.holder.domain
    return found
