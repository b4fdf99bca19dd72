"""Bodies of the API routes the console added (they are in the OpenAPI document too)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskfabric.server import _models as m
from taskfabric.server._names import NAME_PATTERN


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GraphNode(_Model):
    """One node of a workflow, as drawn: its phase and, for a map, its items counted by
    phase; a sub-workflow or a branch has its own nodes (counted by phase too)."""

    node_id: str
    name: str
    kind: str = Field(description="task, map, workflow or branch.")
    case: str = Field(
        default="",
        description="A case of a branch: 'case 1', 'case 2'... or 'else' (its nodes only).",
    )
    task_name: str = ""
    phase: str = Field(
        description="A node phase; NOT STARTED, or NOT TAKEN for a case of a branch that "
        "chose another."
    )
    upstream: list[str] = Field(description="Ids of the nodes this one waits for.")
    attempts: int = 0
    cache_status: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""
    children: dict[str, int] = Field(
        default_factory=dict,
        description="Phase -> how many of its map items, or of its own nodes, are in it.",
    )
    nodes: list[GraphNode] = Field(
        default_factory=list,
        description="A sub-workflow's nodes, or a branch's cases (one node each), drawn "
        "inside it; their ids are under this node's ('n2/n0').",
    )


class Parameter(_Model):
    name: str
    type: str
    value: Any = None
    set: bool = Field(description="False when there is no such value (yet).")


class Graph(_Model):
    execution: m.Execution
    nodes: list[GraphNode] = Field(description="The workflow's nodes in declared order.")
    inputs: list[Parameter] = Field(default_factory=list, description="With values=true.")
    outputs: list[Parameter] = Field(default_factory=list, description="With values=true.")


class PoolWait(_Model):
    """A pool a node's attempt waits for, and its place in that pool's queue now."""

    pool: str
    position: int = Field(description="1: served next.")
    queue: int = Field(description="How many wait in that pool.")
    weight: int
    enqueued_at: float


class NodeDetail(_Model):
    """One node: its record, attempts, typed inputs and outputs, and its first children."""

    node: m.Node
    inputs: list[Parameter]
    outputs: list[Parameter]
    children: list[m.Node] = Field(
        default_factory=list, description="Up to `items` of its map items or nodes."
    )
    children_total: int = 0
    children_counts: dict[str, int] = Field(
        default_factory=dict, description="Its map items (or nodes) counted by phase."
    )
    children_next: str = Field(
        default="", description="More children follow: `after` of GET .../items for them."
    )
    pool_waits: list[PoolWait] = Field(
        default_factory=list, description="Pools its attempt waits for, read now."
    )
    cache_source: str = Field(
        default="", description="A cache hit: the execution that computed the result."
    )


class Children(_Model):
    """A page of a node's map items (or a sub-workflow's or branch's nodes), in order."""

    node_id: str
    items: list[m.Node] = Field(default_factory=list)
    counts: dict[str, int] = Field(
        default_factory=dict, description="Every child counted by phase."
    )
    total: int = Field(default=0, description="Children in the phases asked for (all: all).")
    next_after: str = Field(
        default="", description="The `after` of the next page; empty: this is the last."
    )


class Diff(_Model):
    kind: str
    name: str
    old: str
    new: str
    diff: str = Field(description="A unified diff of the two templates (protobuf text format).")


class TextLaunchRequest(_Model):
    """A launch whose inputs are texts as given on the command line (`--input name=text`),
    parsed by the interface's types exactly as `taskfabric launch` parses them; files and
    dataframes are uploads, as `taskfabric launch -i NAME=LOCAL_PATH` makes them."""

    workflow: str | None = None
    launch_plan: str | None = None
    version: str | None = None
    inputs: dict[str, str] = Field(default_factory=dict)
    uploads: dict[str, str] = Field(
        default_factory=dict,
        description="File and dataframe inputs: input name -> the ref of an upload made first "
        "in this project and domain (POST .../uploads).",
    )
    name: str | None = Field(default=None, pattern=NAME_PATTERN)


class PoolHolder(_Model):
    execution_id: str
    node_id: str
    attempt: int
    project: str
    domain: str
    weight: int
    acquired_at: float
    expires_at: float


class PoolWaiter(_Model):
    position: int
    execution_id: str
    node_id: str
    project: str
    domain: str
    weight: int
    priority: int
    enqueued_at: float


class PoolPushback(_Model):
    """A pushback (a 429, a throttling error): the pool granted nothing new for `seconds`."""

    at: float
    seconds: float
    paused_until: float
    execution_id: str = Field(default="", description="The attempt pushed back, when known.")
    node_id: str = ""
    project: str = ""
    domain: str = ""
    hidden: bool = Field(default=False, description="Of a project this token cannot see.")


class Pool(_Model):
    """A pool as a token sees it: holders and waiters of other projects are counted, not
    named."""

    name: str
    slots: int
    in_use: int
    rate_per_second: float | None = None
    burst: int | None = None
    tokens: float | None = None
    paused_until: float | None = Field(default=None, description="Set by a recent pushback.")
    lease_ttl: float
    project_caps: dict[str, int]
    project_weights: dict[str, float]
    domain_caps: dict[str, int]
    holders: list[PoolHolder]
    waiters: list[PoolWaiter]
    hidden_holders: int = Field(default=0, description="Holders in projects this token cannot see.")
    hidden_waiters: int = 0
    pushbacks: list[PoolPushback] = Field(
        default_factory=list, description="The most recent pushbacks, newest first."
    )


class Preview(_Model):
    """The first of a file, directory or dataframe among an execution's values."""

    kind: str = Field(description="file, directory or dataframe.")
    name: str
    uri: str
    format: str = ""
    size_bytes: int | None = None
    download: str = Field(
        description="Where its bytes are: a directory or a multi-part dataframe as a tar "
        "(`&archive=zip`: a zip)."
    )
    text: str = Field(default="", description="A text file's first lines.")
    lines: int = 0
    binary: bool = Field(default=False, description="A file that is not text: no lines shown.")
    columns: list[str] = Field(default_factory=list, description="A dataframe's or CSV's.")
    rows: list[list[Any]] = Field(default_factory=list)
    total_rows: int | None = Field(default=None, description="A dataframe's number of rows.")
    files: list[str] = Field(
        default_factory=list, description="A directory's (a multi-part dataframe's parts), by path."
    )
    truncated: bool = Field(default=False, description="There is more than shown.")
