"""An execution's workflow as the console draws it: the declared nodes (the compiled workflow)
with their recorded phases, sub-workflows and branches holding their own nodes, map items
counted by phase; and the declared node behind any node id (`n2`, `n2/n0`, `n1[3]`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from taskfabric.console import _models as cm
from taskfabric.core.v1 import workflow_pb2
from taskfabric.metadata import NodeRecord

NOT_STARTED = "NOT STARTED"
#: A case of a branch that chose another one.
NOT_TAKEN = "NOT TAKEN"


def _subworkflows(
    compiled: workflow_pb2.CompiledWorkflow,
) -> dict[str, workflow_pb2.WorkflowTemplate]:
    return {t.id.name: t for t in compiled.subworkflows}


def cases(node: workflow_pb2.Node) -> list[tuple[str, workflow_pb2.Node]]:
    """A branch's cases in order, each with its label ('case 1', ..., 'else')."""
    found = [(f"case {i + 1}", c.then_node) for i, c in enumerate(node.branch.cases)]
    if node.branch.HasField("else_node"):
        found.append(("else", node.branch.else_node))
    return found


def declared(
    compiled: workflow_pb2.CompiledWorkflow, node_id: str
) -> tuple[workflow_pb2.Node | None, bool]:
    """The declared node of `node_id` and whether the id is one of a map's items: `n1` a
    node of the workflow, `n1/n0` a node of sub-workflow (or the chosen case of branch) n1,
    `n1[3]` an item of map n1. (None, False) for an id the workflow has no node for."""
    subs = _subworkflows(compiled)
    nodes: Sequence[workflow_pb2.Node] = compiled.primary.nodes
    parts = node_id.split("/")
    node = None
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        item = part.endswith("]") and "[" in part
        if item and not last:
            return None, False
        wanted = part[: part.index("[")] if item else part
        node = next((n for n in nodes if n.id == wanted), None)
        if node is None:
            return None, False
        target = node.WhichOneof("target")
        if item:
            return (node, True) if target == "map" else (None, False)
        if last:
            break
        if target == "workflow":
            template = subs.get(node.workflow.workflow_id.name)
            if template is None:
                return None, False
            nodes = template.nodes
        elif target == "branch":
            nodes = [n for _, n in cases(node)]
        else:
            return None, False
    return node, False


def _phases(nodes: Sequence[cm.GraphNode]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.phase] = counts.get(n.phase, 0) + 1
    return counts


class _Drawer:
    def __init__(
        self,
        compiled: workflow_pb2.CompiledWorkflow,
        recorded: Mapping[str, NodeRecord],
        item_counts: Mapping[str, dict[str, int]],
    ) -> None:
        self.subs = _subworkflows(compiled)
        self.recorded = recorded
        self.item_counts = item_counts

    def nodes(self, declared: Sequence[workflow_pb2.Node], prefix: str) -> list[cm.GraphNode]:
        return [
            self.node(n, prefix + n.id, [prefix + u for u in n.upstream_node_ids]) for n in declared
        ]

    def node(
        self, node: workflow_pb2.Node, full_id: str, upstream: list[str], case: str = ""
    ) -> cm.GraphNode:
        found = self.recorded.get(full_id)
        kind = node.WhichOneof("target") or "task"
        task_name = ""
        if kind in ("task", "map"):
            task_name = (node.task.task_id if kind == "task" else node.map.task_id).name
        drawn = cm.GraphNode(
            node_id=full_id,
            name=node.name or node.id,
            kind=kind,
            case=case,
            task_name=found.task_name if found and found.task_name else task_name,
            phase=found.phase if found else NOT_STARTED,
            upstream=upstream,
            attempts=found.attempts if found else 0,
            cache_status=found.cache_status if found else "",
            started_at=found.started_at if found else None,
            finished_at=found.finished_at if found else None,
            message=found.message if found else "",
        )
        if kind == "map":
            drawn.children = dict(self.item_counts.get(full_id, {}))
        elif kind == "workflow":
            template = self.subs.get(node.workflow.workflow_id.name)
            drawn.nodes = self.nodes(template.nodes, full_id + "/") if template else []
            drawn.children = _phases(drawn.nodes)
        elif kind == "branch":
            inner = [self.node(c, f"{full_id}/{c.id}", [], label) for label, c in cases(node)]
            if any(c.phase != NOT_STARTED for c in inner):
                for c in inner:
                    if c.phase == NOT_STARTED:
                        c.phase = NOT_TAKEN
            drawn.nodes = inner
            drawn.children = _phases(inner)
        return drawn


def graph_nodes(
    compiled: workflow_pb2.CompiledWorkflow,
    recorded: Sequence[NodeRecord],
    item_counts: Mapping[str, dict[str, int]],
) -> list[cm.GraphNode]:
    """The workflow's nodes in declared order, each with its recorded phase."""
    drawer = _Drawer(compiled, {r.node_id: r for r in recorded}, item_counts)
    return drawer.nodes(compiled.primary.nodes, "")
