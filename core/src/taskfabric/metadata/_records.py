"""Plain records read from and written to the metadata database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


@dataclass
class ExecutionRecord:
    id: str
    project: str
    domain: str
    name: str
    workflow_name: str
    phase: str
    created_at: float
    workflow_version: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    inputs_uri: str = ""
    outputs_uri: str = ""
    workflow_uri: str = ""
    # Where the workflow's code lives, so a resume can load it: {"file", "object", "root"}.
    code: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    owner: str = ""
    heartbeat_at: float | None = None
    # The launch plan ("name:version") and schedule slot that launched it; the cluster it runs on.
    launch_plan: str | None = None
    scheduled_at: float | None = None
    cluster: str | None = None


@dataclass
class NodeRecord:
    execution_id: str
    node_id: str
    kind: str
    phase: str
    name: str = ""
    parent_id: str = ""
    task_name: str = ""
    attempts: int = 0
    inputs_uri: str = ""
    outputs_uri: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    message: str = ""
    cache_status: str = ""


@dataclass
class AttemptRecord:
    execution_id: str
    node_id: str
    attempt: int
    phase: str
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    backend: str = ""
    log_links: list[dict[str, str]] = field(default_factory=list)
    #: The backend's external handle of the attempt's work ("" if it recorded none). Read
    #: only: Batch writes leave it as it is; MetadataStore.record_attempt_handle sets it.
    handle: str = ""


@dataclass
class EventRecord:
    execution_id: str
    node_id: str
    attempt: int
    phase: str
    at: float
    message: str = ""


@dataclass
class MapItemsQueued:
    """The `count` items of a map, recorded QUEUED in bulk: rows `<parent_id>[i]`, kind
    map_item, named `<name>[i]`. An item row that exists already (an execution resumed) is
    set QUEUED again, unless it SUCCEEDED."""

    execution_id: str
    parent_id: str
    name: str
    task_name: str
    count: int
    at: float


@dataclass
class MapItemsStopped:
    """Every item of a map still QUEUED, recorded as `phase` (SKIPPED, ABORTED) in bulk."""

    execution_id: str
    parent_id: str
    phase: str
    at: float
    message: str = ""


class PriorItem(NamedTuple):
    """What a resume uses of a map item recorded before (`MetadataStore.prior_items`)."""

    node_id: str
    phase: str
    attempts: int
    outputs_uri: str
