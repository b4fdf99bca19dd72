"""Composite nodes: maps (one item per element of the mapped inputs), sub-workflows (a
scope of their own) and conditionals (the one case that holds). Each starts children through
the execution's node graph and succeeds when they have."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol

from taskfabric.core.v1 import execution_pb2, types_pb2, workflow_pb2
from taskfabric.engine._bindings import evaluate
from taskfabric.engine._documents import Documents
from taskfabric.engine._recording import Recorder
from taskfabric.engine._state import RUNNING, MapItems, NodeState, Scope
from taskfabric.engine._util import system_error, user_error


class Graph(Protocol):
    """What composite nodes use of the execution's node graph (the Runner)."""

    def resolve_inputs(
        self, ns: NodeState, input_types: Mapping[str, types_pb2.LiteralType]
    ) -> types_pb2.LiteralMap: ...

    def make_node(
        self,
        full_id: str,
        node: workflow_pb2.Node,
        scope: Scope,
        parent: NodeState | None = None,
    ) -> NodeState: ...

    def ready(self, ns: NodeState) -> None: ...

    def feed(self, ns: NodeState) -> None:
        """`ns` is a map whose items start as room for them frees up (`next_item`)."""
        ...

    def start_scope(self, scope: Scope) -> None: ...

    def fail(
        self, ns: NodeState, err: execution_pb2.ExecutionError, *, phase: str = ...
    ) -> None: ...

    def succeeded(self, ns: NodeState, outputs: types_pb2.LiteralMap) -> None: ...


class Composites:
    """Starts and completes the map, sub-workflow and branch nodes of one execution."""

    def __init__(
        self,
        *,
        subworkflows: Mapping[str, workflow_pb2.WorkflowTemplate],
        documents: Documents,
        recorder: Recorder,
        graph: Graph,
    ) -> None:
        self._subworkflows = subworkflows
        self._documents = documents
        self._recorder = recorder
        self._graph = graph

    def start(self, ns: NodeState) -> None:
        """Start a map, sub-workflow or branch node (raises BindingError on bad inputs)."""
        if ns.kind == "map":
            self._start_map(ns)
        elif ns.kind == "workflow":
            self._start_subworkflow(ns)
        else:
            self._start_branch(ns)

    def child_succeeded(
        self, parent: NodeState, child: NodeState, outputs: types_pb2.LiteralMap
    ) -> None:
        """A map's item, or a branch's chosen case, succeeded with `outputs`."""
        if parent.kind == "map":
            items = parent.map_items
            assert items is not None
            items.store(child.item_index, outputs)
            limit = self._documents.max_output_bytes
            if limit is not None and items.size > limit:
                self._graph.fail(parent, _gathered_too_large(parent, items, limit))
            elif items.done == items.count:
                self._finish_map(parent)
        else:
            self.complete(parent, outputs)

    def next_item(self, ns: NodeState) -> NodeState | None:
        """The next item of the map `ns` to start, made now; None when all were."""
        items = ns.map_items
        if items is None or items.next >= items.count:
            return None
        i = items.next
        items.next += 1
        assert ns.inputs is not None
        item = self._graph.make_node(f"{ns.full_id}[{i}]", items.item_node, ns.scope, parent=ns)
        item.item_index = i
        item.inputs = items.item_inputs(ns.inputs, i)
        return item

    def complete(self, ns: NodeState, outputs: types_pb2.LiteralMap) -> None:
        """The composite node succeeded with `outputs` (stored as its document)."""
        ns.outputs_uri = self._documents.put(ns.full_id, "outputs.pb", outputs)
        self._graph.succeeded(ns, outputs)

    # -- maps --------------------------------------------------------------------------

    def _start_map(self, ns: NodeState) -> None:
        assert ns.task is not None
        graph = self._graph
        types = {i.name: i.type for i in ns.task.interface.inputs}
        ns.inputs = graph.resolve_inputs(ns, types)
        ns.inputs_uri = self._documents.put(ns.full_id, "inputs.pb", ns.inputs)
        mapped = list(ns.node.map.mapped_inputs)
        lengths = {name: len(ns.inputs.literals[name].list.literals) for name in mapped}
        if len(set(lengths.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            graph.fail(
                ns,
                system_error(
                    "MapLengthMismatch", f"mapped inputs have different lengths ({detail})"
                ),
            )
            return
        count = next(iter(lengths.values()), 0)
        ns.phase = RUNNING
        self._recorder.node(ns, f"{count} items")
        broadcast = types_pb2.LiteralMap()
        for k, v in ns.inputs.literals.items():
            if k not in lengths:
                broadcast.literals[k].CopyFrom(v)
        ns.map_items = MapItems(
            count=count,
            item_node=workflow_pb2.Node(
                id=ns.node.id,
                name=ns.node.name,
                task=workflow_pb2.TaskNode(task_id=ns.node.map.task_id),
            ),
            mapped=tuple(mapped),
            broadcast=broadcast,
            queued_at=time.time(),
            outputs={o.name: [None] * count for o in ns.task.interface.outputs},
        )
        if count == 0:
            self._finish_map(ns)
            return
        self._recorder.queue_items(ns, count, ns.map_items.queued_at)
        graph.feed(ns)

    def _finish_map(self, ns: NodeState) -> None:
        assert ns.map_items is not None
        out = ns.map_items.collected()
        ns.map_items = None  # the outputs are in `out` now
        self.complete(ns, out)

    # -- sub-workflows and branches ----------------------------------------------------

    def _start_subworkflow(self, ns: NodeState) -> None:
        template = self._subworkflows[ns.node.workflow.workflow_id.name]
        types = {i.name: i.type for i in template.interface.inputs}
        ns.inputs = self._graph.resolve_inputs(ns, types)
        ns.inputs_uri = self._documents.put(ns.full_id, "inputs.pb", ns.inputs)
        ns.phase = RUNNING
        self._recorder.node(ns)
        self._graph.start_scope(Scope(ns.full_id + "/", template, ns.inputs, owner=ns))

    def _start_branch(self, ns: NodeState) -> None:
        scope = ns.scope
        chosen: workflow_pb2.Node | None = None
        for i, case in enumerate(ns.node.branch.cases):
            if evaluate(case.condition, scope.inputs, scope.outputs):
                chosen, label = case.then_node, f"case {i + 1} holds"
                break
        else:
            if ns.node.branch.HasField("else_node"):
                chosen, label = ns.node.branch.else_node, "else"
        if chosen is None:
            self._graph.fail(
                ns,
                execution_pb2.ExecutionError(
                    kind=execution_pb2.ErrorKind.ERROR_KIND_USER,
                    code="NoCaseHeld",
                    message=ns.node.branch.else_error or "no case of the conditional held",
                ),
            )
            return
        ns.phase = RUNNING
        self._recorder.node(ns, f"{label}: running {chosen.name or chosen.id}")
        child = self._graph.make_node(f"{ns.full_id}/{chosen.id}", chosen, scope, parent=ns)
        self._graph.ready(child)


def _gathered_too_large(ns: NodeState, items: MapItems, limit: int) -> execution_pb2.ExecutionError:
    """`OutputsTooLarge` for a map whose items' outputs, gathered into the map's own lists,
    have passed `[engine] max_output_bytes`: failed as soon as they do (the engine holds
    them in memory until the map ends), not retried."""
    return user_error(
        "OutputsTooLarge",
        f"map '{ns.name}' gathered {items.size} bytes of its items' outputs after {items.done} "
        f"of its {items.count} items, more than the {limit} bytes a node's outputs may be "
        "([engine] max_output_bytes): have each item return large data as a File, Directory "
        "or DataFrame, which travel as blobs, or raise the setting",
    )
