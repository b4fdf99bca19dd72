"""Request and response bodies of the HTTP API (they make its OpenAPI document).

Values (inputs, outputs) are plain JSON as `taskfabric.types.literal_to_json` writes them:
numbers, strings, booleans, null, arrays and objects; datetimes and durations as ISO 8601
strings, bytes as "base64:<data>", enums by member name, files as objects with a uri.
Times are UTC epoch seconds.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from taskfabric.server._auth import Role
from taskfabric.server._names import NAME_PATTERN, SCOPE_PATTERN


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(_Model):
    """The body of every error response."""

    detail: str = Field(description="What was wrong and what to do.")
    input: str | None = Field(default=None, description="The workflow input at fault, if any.")
    inputs: list[str] | None = Field(
        default=None,
        description="The workflow inputs at fault when a launch names them (missing, "
        "unknown or fixed by the launch plan), the first being `input`.",
    )
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Each problem of an invalid request body or query."
    )


class Health(_Model):
    status: str = Field(examples=["ok"])
    version: str


class WhoAmI(_Model):
    token_id: str = Field(description="The public id of the token ('' with auth disabled).")
    name: str
    role: Role
    projects: list[str] = Field(description="The token's projects; '*' means every project.")
    auth: bool = Field(description="False when the server runs without authentication.")


class ProjectInfo(_Model):
    name: str
    domains: list[str] = Field(description="Domains with registered entities or executions.")


class Parameter(_Model):
    """One input or output of a workflow's interface."""

    name: str
    type: str = Field(description="The type as people read it, e.g. list[int].")
    literal_type: dict[str, Any] = Field(
        description="The taskfabric.core.v1.LiteralType, in protobuf's JSON mapping."
    )
    required: bool = False
    default: Any = Field(default=None, description="The default value of an optional input.")


class Entity(_Model):
    """One registered version of a task, workflow or launch plan."""

    kind: str = Field(examples=["workflow"])
    project: str
    domain: str
    name: str
    version: str
    digest: str = Field(description="sha256 of the registered template.")
    created_at: float


class WorkflowDetail(Entity):
    inputs: list[Parameter]
    outputs: list[Parameter]
    tasks: list[str] = Field(description="Names of the tasks the workflow runs.")
    images: dict[str, str] = Field(
        default_factory=dict,
        description="Task name -> the container image container backends run it in (tasks "
        "registered with one).",
    )
    versions: list[str] = Field(description="Every registered version, newest first.")


class RegisteredEntity(_Model):
    kind: str
    name: str
    version: str
    status: str = Field(description="registered (new) or unchanged (registered before).")
    digest: str


class Registration(_Model):
    project: str
    domain: str
    version: str
    bundle_digest: str
    entities: list[RegisteredEntity]
    unchanged: bool = Field(description="True when everything was registered before.")
    skipped: list[str] = Field(default_factory=list)


class Upload(_Model):
    """Data staged for a file, directory or dataframe input: pass `{"upload": ref}` as that
    input's value in a launch of the same project and domain."""

    ref: str = Field(examples=["file/9f86d08…/orders.csv"])
    kind: str = Field(description="file or directory (a tar of it).")
    name: str
    sha256: str
    size: int = Field(description="Bytes received.")


class LaunchRequest(_Model):
    """Launch a registered workflow, or a launch plan, with inputs given as JSON values.

    With `name`, the launch is idempotent: launching again with the same name and inputs
    returns the execution made the first time (status 200 instead of 201).
    """

    workflow: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="A registered workflow's name."
    )
    launch_plan: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="A launch plan's name (instead of `workflow`).",
    )
    version: str | None = Field(
        default=None,
        pattern=SCOPE_PATTERN,
        description="The version to launch; default: the latest registered workflow, or the "
        "active launch plan version.",
    )
    inputs: dict[str, Any] = Field(
        default_factory=dict,
        description="Input name -> JSON value; omitted inputs take their defaults. A file, "
        'directory or dataframe input takes {"upload": ref} of an upload made first.',
    )
    name: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="The execution's name, unique in the project and domain. Default: random.",
    )


class ExecutionError(_Model):
    kind: str = ""
    code: str = ""
    message: str = ""
    node_id: str = ""


class Execution(_Model):
    """An execution as listed."""

    id: str
    project: str
    domain: str
    name: str
    workflow: str
    workflow_version: str
    phase: str = Field(examples=["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "ABORTED"])
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    owner: str = Field(default="", description="The engine process running it (host:pid).")
    heartbeat_at: float | None = None
    launch_plan: str | None = Field(default=None, description="name:version of its plan.")
    scheduled_at: float | None = Field(default=None, description="Its schedule slot.")
    error: ExecutionError | None = None


class Launched(_Model):
    execution: Execution
    created: bool = Field(description="False when an execution of that name existed already.")


class Attempt(_Model):
    attempt: int
    phase: str
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = Field(
        default=None, description="kind, code, message and traceback of a failed attempt."
    )
    backend: str = ""
    log_links: list[dict[str, str]] = Field(default_factory=list)


class Node(_Model):
    node_id: str
    name: str = ""
    kind: str = Field(description="task, map, map_item, workflow or branch.")
    parent_id: str = ""
    task_name: str = ""
    phase: str = Field(description="A node phase, or NOT STARTED for a node with no record.")
    attempts: int = 0
    cache_status: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    message: str = ""
    attempt_details: list[Attempt] = Field(default_factory=list)
    outputs: dict[str, Any] | None = Field(
        default=None, description="The node's outputs (with values=true, succeeded nodes)."
    )


class Event(_Model):
    node_id: str
    attempt: int
    phase: str
    at: float
    message: str = ""


class Display(_Model):
    """Values rendered for people, as `taskfabric executions show` prints them."""

    inputs: dict[str, str] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    nodes: dict[str, str] = Field(
        default_factory=dict, description="node id -> its outputs on one line."
    )


class ExecutionDetail(_Model):
    execution: Execution
    input_names: list[str] = Field(description="The workflow's inputs, in declared order.")
    output_names: list[str] = Field(description="The workflow's outputs, in declared order.")
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None
    nodes: list[Node]
    events: list[Event] = Field(default_factory=list)
    display: Display | None = None
    omitted: dict[str, str] = Field(
        default_factory=dict,
        description="Values left out, each over the size the server reads for a request "
        "([server] max_value_bytes): 'inputs', 'outputs' or a node id -> why.",
    )


class NodeData(_Model):
    inputs: dict[str, Any] | None = None
    outputs: dict[str, Any] | None = None


class TaskLog(_Model):
    """A piece of one attempt's log (its stdout and stderr), from `offset` on. To follow a
    running attempt, ask again with `offset=next_offset` until `complete`."""

    execution_id: str
    node_id: str
    attempt: int = Field(description="The attempt read (the latest unless one was asked).")
    attempts: int = Field(description="How many attempts the node has had.")
    phase: str = Field(description="The attempt's phase; RUNNING while it may still write.")
    source: str = Field(
        description="live (the file being written, on the engine's machine), stored (the "
        "copy kept in the blob store when the attempt ended, its last 1 MiB) or none."
    )
    offset: int = Field(description="The byte offset `text` starts at.")
    next_offset: int = Field(description="The byte offset to ask for next.")
    text: str = Field(description="The bytes read, as UTF-8 (invalid bytes replaced).")
    complete: bool = Field(description="The attempt has ended and `text` reaches its end.")


class CancelRequest(_Model):
    reason: str = Field(default="cancelled through the API", max_length=1000)


class PhaseResult(_Model):
    id: str
    phase: str


class RelaunchRequest(_Model):
    name: str | None = Field(
        default=None, pattern=NAME_PATTERN, description="The new execution's name."
    )


class LaunchPlan(_Model):
    project: str
    domain: str
    name: str
    version: str = Field(description="The version described here (default: the active one).")
    versions: list[str] = Field(description="Registered versions, newest first.")
    active_version: str | None = None
    workflow: str
    workflow_version: str
    schedule: str = Field(description='e.g. "every 0:05:00", "cron \'0 1 * * *\' (UTC)".')
    activated_at: float | None = None
    last_slot: float | None = Field(
        default=None, description="The newest schedule slot the scheduler handled."
    )
    next_slot: float | None = None


class ActivateRequest(_Model):
    version: str = Field(pattern=SCOPE_PATTERN)


class Activation(_Model):
    name: str
    active_version: str | None
    changed: bool


class TokenCreate(_Model):
    projects: list[str] = Field(min_length=1, description="Projects; ['*'] for every one.")
    role: Role
    name: str = Field(default="", max_length=255)
    expires_in: float | None = Field(
        default=None, gt=0, description="Seconds until it stops working; unset: never."
    )


class Token(_Model):
    id: str
    name: str
    role: Role
    projects: list[str]
    created_at: float
    created_by: str = ""
    last_used_at: float | None = Field(
        default=None, description="Its last use (recorded at most once a minute)."
    )
    revoked_at: float | None = None
    expires_at: float | None = Field(default=None, description="Unset: it does not expire.")
    state: str = Field(default="active", description="active, expired or revoked.")


class TokenCreated(_Model):
    token: str = Field(description="The token's text. It is shown only this once.")
    info: Token
