"""In-memory state of a running execution: scopes (workflow instances) and nodes."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

from taskfabric.core.v1 import tasks_pb2, types_pb2, workflow_pb2

# Phases, as stored in the metadata database (NodePhase / ExecutionPhase without prefix).
QUEUED = "QUEUED"
RUNNING = "RUNNING"
RETRYING = "RETRYING"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
ABORTED = "ABORTED"
TIMED_OUT = "TIMED_OUT"
TERMINAL = frozenset({SUCCEEDED, FAILED, SKIPPED, ABORTED, TIMED_OUT})


@dataclass(eq=False)
class Scope:
    """One instance of a workflow template: the primary workflow or a sub-workflow."""

    prefix: str
    template: workflow_pb2.WorkflowTemplate
    inputs: types_pb2.LiteralMap
    owner: NodeState | None = None
    outputs: dict[str, types_pb2.LiteralMap] = field(default_factory=dict)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    remaining: int = 0


@dataclass(eq=False)
class MapItems:
    """A map node's items, kept compactly: an item's `NodeState` exists only from when it
    is about to start (`take`) until it ends, and what the map keeps of a finished item is
    its outputs, each as one serialized literal (about 50 bytes for an int, against some
    3 KB for a NodeState with its input and output maps). Their rows in the metadata
    database are written in bulk when the map starts (QUEUED) and updated one by one as
    items run."""

    count: int
    #: the node an item runs (the map's task), and the inputs that every item gets
    item_node: workflow_pb2.Node
    mapped: tuple[str, ...]
    broadcast: types_pb2.LiteralMap
    #: when the items were queued: each item's `started_at` (time waited counts from it)
    queued_at: float
    #: output name -> each item's output, serialized (None until the item succeeds)
    outputs: dict[str, list[bytes | None]]
    #: items 0 .. next-1 have been taken (started, or served from a record or the cache)
    next: int = 0
    done: int = 0
    #: the bytes of the outputs gathered so far (what the map's own outputs will be)
    size: int = 0

    #: each mapped input's list of values in the map's inputs (found once: the path to it
    #: through the protobuf maps costs more than the copy of an item's value)
    _lists: list[tuple[str, Any]] | None = None

    def item_inputs(self, inputs: types_pb2.LiteralMap, index: int) -> types_pb2.LiteralMap:
        """Item `index`'s inputs: its element of each mapped list, and the other inputs."""
        lists = self._lists
        if lists is None:
            lists = self._lists = [(n, inputs.literals[n].list.literals) for n in self.mapped]
        out = types_pb2.LiteralMap()
        if self.broadcast.literals:
            out.CopyFrom(self.broadcast)
        literals = out.literals
        for name, values in lists:
            literals[name].CopyFrom(values[index])
        return out

    def store(self, index: int, outputs: types_pb2.LiteralMap) -> None:
        for name, values in self.outputs.items():
            values[index] = encoded = outputs.literals[name].SerializeToString(deterministic=True)
            self.size += len(encoded) + 4  # its list entry's tag and length (at most 4 bytes)
        self.done += 1

    def collected(self) -> types_pb2.LiteralMap:
        """The map's outputs: each output of every item, in item order, as one list."""
        out = types_pb2.LiteralMap()
        for name, values in self.outputs.items():
            lit = out.literals[name]
            lit.list.SetInParent()
            # LiteralList is `repeated Literal literals = 1`: its encoding is each item's
            # encoded literal behind tag 0x0a and its length, parsed in one call.
            lit.list.MergeFromString(b"".join(_list_entry(v or b"") for v in values))
        return out


def _list_entry(encoded: bytes) -> bytes:
    n = len(encoded)
    prefix = bytearray(b"\x0a")
    while n >= 0x80:
        prefix.append((n & 0x7F) | 0x80)
        n >>= 7
    prefix.append(n)
    return bytes(prefix) + encoded


@dataclass(eq=False, slots=True)
class NodeState:
    """One node (or map item, or chosen branch case) of an execution."""

    full_id: str
    node: workflow_pb2.Node
    scope: Scope
    kind: str  # task | map | map_item | branch | workflow
    parent: NodeState | None = None
    phase: str = QUEUED
    attempt: int = 0
    failures: int = 0
    deps: set[str] = field(default_factory=set)
    dependents: list[NodeState] = field(default_factory=list)
    task: tasks_pb2.TaskTemplate | None = None
    task_def: Any = None
    inputs: types_pb2.LiteralMap | None = None
    outputs: types_pb2.LiteralMap | None = None
    inputs_uri: str = ""
    outputs_uri: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    attempt_started_at: float | None = None
    error: dict[str, Any] | None = None
    message: str = ""
    # map nodes: their items (compact); a map item: its index
    map_items: MapItems | None = None
    item_index: int = 0
    # the backend running the current attempt, and the log links it gave for it so far
    backend: Any = None
    log_links: list[Any] = field(default_factory=list)
    # re-attach: the handle the next submit carries (an attempt a stopped engine process left
    # running), and whether the current attempt was submitted with one
    handle: str = ""
    reattached: bool = False
    # caching: key of this node's result, and hit/miss/written/disabled
    cache_key: str = ""
    cache_status: str = ""
    # an earlier run of the execution (resumed) recorded this node, which runs again
    recorded_before: bool = False

    @property
    def name(self) -> str:
        if self.kind == "map_item" and self.parent is not None:
            return f"{self.parent.node.name}[{self.item_index}]"
        return self.node.name or self.node.id

    @property
    def attempt_id(self) -> str:
        return f"{self.scope_execution_id}/{self.full_id}/{self.attempt}"

    scope_execution_id: str = ""


class _PriorMap:
    """One map's recorded items, by index, in arrays: attempts, and where each succeeded
    item's outputs are (segment number, offset, length in that pack segment; -1: none,
    -2: a URI of its own in `plain`)."""

    __slots__ = ("attempts", "length", "offset", "plain", "segment")

    def __init__(self) -> None:
        self.attempts = array("l")
        self.segment = array("l")
        self.offset = array("q")
        self.length = array("q")
        self.plain: dict[int, str] = {}

    def grow(self, index: int) -> None:
        missing = index + 1 - len(self.attempts)
        if missing > 0:
            missing = max(missing, len(self.attempts) // 2)  # amortized, as a list grows
            self.attempts.extend(repeat(-1, missing))  # -1: nothing recorded
            self.segment.extend(repeat(-1, missing))
            self.offset.extend(repeat(0, missing))
            self.length.extend(repeat(0, missing))


class PriorItems:
    """What a resumed execution knows of its maps' items from before: each item that
    succeeded (its outputs' URI) or had attempts (their count), kept compactly for maps of
    a million items resumed late: per map, arrays indexed by item (about 30 bytes an item),
    the URI of each pack segment the outputs are in stored once
    (`file:///.../packs/<segment>.pack`, and per item the `#<offset>+<length>` in it)."""

    def __init__(self, rows: Iterable[tuple[str, str, int, str]] = ()) -> None:
        """`rows`: each item's (node_id, phase, attempts, outputs_uri), `add`ed."""
        self._maps: dict[str, _PriorMap] = {}
        self._segments: dict[str, int] = {}
        self._segment_uris: list[str] = []
        self.succeeded = 0
        for row in rows:
            self.add(*row)

    def __bool__(self) -> bool:
        return bool(self._maps)

    def add(self, node_id: str, phase: str, attempts: int, outputs_uri: str) -> None:
        """One item's row (`MetadataStore.prior_items`)."""
        parent, _, index_text = node_id.rpartition("[")
        index = int(index_text[:-1])
        found = self._maps.get(parent)
        if found is None:
            found = self._maps[parent] = _PriorMap()
        found.grow(index)
        found.attempts[index] = attempts
        if phase != SUCCEEDED or not outputs_uri:
            return
        self.succeeded += 1
        base, _, frag = outputs_uri.partition("#")
        offset, plus, length = frag.partition("+")
        if not (plus and offset.isdigit() and length.isdigit()):
            found.segment[index] = -2
            found.plain[index] = outputs_uri
            return
        segment = self._segments.get(base)
        if segment is None:
            segment = self._segments[base] = len(self._segment_uris)
            self._segment_uris.append(base)
        found.segment[index] = segment
        found.offset[index] = int(offset)
        found.length[index] = int(length)

    def get(self, map_id: str, index: int) -> tuple[int, str] | None:
        """Item `index` of map `map_id`: its attempts and the URI of its outputs ("" unless
        it succeeded); None when it had neither."""
        found = self._maps.get(map_id)
        if found is None or index >= len(found.attempts) or found.attempts[index] < 0:
            return None
        segment = found.segment[index]
        if segment == -2:
            uri = found.plain[index]
        elif segment >= 0:
            uri = f"{self._segment_uris[segment]}#{found.offset[index]}+{found.length[index]}"
        else:
            uri = ""
        return found.attempts[index], uri
