"""The contract between the taskfabric core and its plugins.

A plugin is a Python distribution that provides any of:

- **backend drivers**: a `Backend` subclass, registered as an entry point in the
  `taskfabric.backends` group under the short name users write in the config file
  (`driver = "spark"`). The core owns retries, timeouts, caching and throttling; a backend only
  talks to its engine: submit an attempt, poll it, cancel it.
- **blob store drivers**: a `BlobStore` subclass in the `taskfabric.storage` group, named by URI
  scheme (`file`, `s3`).
- **hooks**: a module of `@hookimpl` functions in the `taskfabric.hooks` group, answering the
  hooks declared in `taskfabric.hookspecs`: task types (`TaskType`), type transformers, and
  execution and node lifecycle events.

A plugin declares the core versions it supports in its own dependencies
(`dependencies = ["taskfabric>=0.1,<0.2"]`); the core refuses to load it otherwise, with a
message that says which versions it needs.
"""

from __future__ import annotations

import abc
import enum
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import pluggy
from google.protobuf import any_pb2, message
from pydantic import BaseModel, ConfigDict

from taskfabric._entrypoints import BACKENDS_GROUP, COMMANDS_GROUP, HOOKS_GROUP, STORAGE_GROUP
from taskfabric.core.v1 import execution_pb2, tasks_pb2, types_pb2
from taskfabric.lazy import lazy_exports

if TYPE_CHECKING:
    from taskfabric.storage import BlobStore, PackStore

__all__ = [
    "BACKENDS_GROUP",
    "COMMANDS_GROUP",
    "HOOKS_GROUP",
    "RUNNING",
    "STORAGE_GROUP",
    "AttemptError",
    "AttemptPhase",
    "AttemptStatus",
    "Backend",
    "BackendContext",
    "BackendSettings",
    "CheckResult",
    "LogLink",
    "NodeEvent",
    "PoolRequest",
    "TaskAttempt",
    "TaskCall",
    "TaskConfig",
    "TaskType",
    "hookimpl",
    "lazy_exports",
]


#: Marks a function of a hook module as an implementation of a taskfabric hook.
hookimpl = pluggy.HookimplMarker("taskfabric")


# -- attempts --------------------------------------------------------------------------------


class AttemptPhase(enum.Enum):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


@dataclass(frozen=True)
class LogLink:
    """Where to read an attempt's logs: a URL or a file URI, with a short name."""

    name: str
    uri: str


@dataclass(frozen=True)
class AttemptError:
    """Why an attempt failed.

    `kind` is "user" for errors raised by the task's own code and "system" for the platform's
    (a lost connection, an engine that refused the job). The core retries an attempt only when
    `retryable` is true and the task has retries left.
    """

    code: str
    message: str
    kind: str = "user"
    retryable: bool = True
    traceback: str = ""

    def to_proto(self) -> execution_pb2.ExecutionError:
        kind = (
            execution_pb2.ErrorKind.ERROR_KIND_USER
            if self.kind == "user"
            else execution_pb2.ErrorKind.ERROR_KIND_SYSTEM
        )
        return execution_pb2.ExecutionError(
            kind=kind,
            code=self.code,
            message=self.message,
            retryable=self.retryable,
            traceback=self.traceback,
        )

    @classmethod
    def from_proto(cls, err: execution_pb2.ExecutionError) -> AttemptError:
        kind = "system" if err.kind == execution_pb2.ErrorKind.ERROR_KIND_SYSTEM else "user"
        return cls(err.code, err.message, kind, err.retryable, err.traceback)


@dataclass
class AttemptStatus:
    """What a backend knows of an attempt. Outputs are given in memory, or by URI."""

    phase: AttemptPhase
    outputs: types_pb2.LiteralMap | None = None
    outputs_uri: str = ""
    error: AttemptError | None = None
    message: str = ""
    #: Where to read the attempt's logs. Given with RUNNING (after `attempt.notify`), they are
    #: recorded at once, so people can follow the attempt while it runs, and kept when it is
    #: stopped (timeout, abort); given at the end, they replace those.
    log_links: list[LogLink] = field(default_factory=list)
    #: Pools whose service pushed back (HTTP 429 with Retry-After, a throttling error):
    #: pool -> seconds during which the pool grants nothing new. Applied with any phase: a
    #: RUNNING status carries it when the backend retries the work itself (report it once).
    pushback: dict[str, float] = field(default_factory=dict)


RUNNING = AttemptStatus(AttemptPhase.RUNNING)


def _ignore_handle(handle: str) -> None:
    """What `TaskAttempt.record_handle` does where no engine records handles (tests)."""


@dataclass
class TaskAttempt:
    """One attempt of one task node, as handed to a backend.

    `attempt_id` is unique per attempt and stable: submitting the same id twice (after an
    engine restart, say) must not start the work twice. A backend that runs the task's code
    elsewhere reads the inputs from `inputs_uri` and has it write its outputs document to
    `outputs_uri` (the `taskfabric-execute` entrypoint does both).

    **Re-attach.** A backend whose work outlives the engine process (a process group, a
    remote job) calls `record_handle` with the work's external handle (application id, pod
    name, job id, pid and start time) as soon as it knows it; the engine stores it durably
    before the call returns. When an engine process stops during the attempt (a crash, a
    `kill -9`) and the execution is resumed, the same attempt (same `attempt_id` and number)
    is submitted again with `handle` set to what was recorded, and the backend re-attaches
    to that work, reads its finished result, or stops it and starts clean: it never starts a
    second job for one attempt. Backends that do this set `Backend.reattaches`.
    """

    attempt_id: str
    execution_id: str
    node_id: str
    attempt: int
    task: tasks_pb2.TaskTemplate
    inputs: types_pb2.LiteralMap
    inputs_uri: str
    outputs_uri: str
    raw_prefix: str
    # Called, from any thread, with attempt_id when the attempt's state changed.
    notify: Callable[[str], None]
    # The loaded task object, for backends that run Python in the engine's process.
    task_definition: Any = None
    project: str = ""
    domain: str = ""
    #: The external handle an earlier engine process recorded for this same attempt (through
    #: `record_handle`); "" for an attempt submitted the first time.
    handle: str = ""
    #: Records the attempt's external handle durably (committed before it returns); callable
    #: from any thread, as often as the handle changes. Raises when it cannot be stored:
    #: then the work must not go on, since no later engine could find it.
    record_handle: Callable[[str], None] = field(default=_ignore_handle)
    #: Environment variables the attempt's process must get (a backend that runs the task in
    #: a process, a container or a job of its own passes them on): the address and secret of
    #: the engine's pool channel, which `taskfabric.hold()` in the task's code uses.
    env: dict[str, str] = field(default_factory=dict)
    #: Folders the task's code is imported from, first on the attempt process's PYTHONPATH
    #: (a registered workflow's extracted code bundle): a backend that runs the task in a
    #: process of its own puts them there; a sandbox also makes them visible, read-only.
    code_path: tuple[str, ...] = ()

    @property
    def error_uri(self) -> str:
        """Where `taskfabric-execute` writes the error document of a failed attempt."""
        return self.outputs_uri.rsplit("/", 1)[0] + f"/error-{self.attempt}.pb"


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class NodeEvent:
    """A node changed phase: what the `taskfabric_node_event` hook and progress displays get.

    `phase` is the node's new phase (QUEUED, RUNNING, RETRYING, SUCCEEDED, FAILED, TIMED_OUT,
    ABORTED, SKIPPED); `kind` is task, map, map_item, branch or workflow; `attempt` the
    node's current attempt number (0 before its first); `message` a short human text (why
    it waits, what failed), possibly empty.
    """

    execution_id: str
    node_id: str
    name: str
    kind: str
    phase: str
    attempt: int
    message: str = ""
    #: "hit" when the node's outputs came from the cache (see NodeRecord.cache_status).
    cache_status: str = ""


# -- backends --------------------------------------------------------------------------------


class BackendSettings(BaseModel):
    """Base of a backend's settings model: the keys of its `[backends.<name>]` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _no_task_types(name: str) -> TaskType:
    raise LookupError(f"no task types in this context (asked for '{name}')")


def _no_tokens(weights: Mapping[str, int]) -> float:
    return 0.0


def _no_pushback(pools: Mapping[str, float]) -> None:
    return None


def _no_capacity(pool: str, slots: int | None) -> None:
    return None


@dataclass(frozen=True)
class BackendContext:
    """What the core gives every backend it creates."""

    store: BlobStore
    literals: PackStore
    data_root: Path
    work_root: Path
    parallelism: int
    core_version: str
    #: Looks up a task type by name in the engine's plugins.
    task_type: Callable[[str], TaskType] = field(default=_no_task_types)
    #: For a call an attempt makes beyond the one its pool grant paid for (a retry, a status
    #: poll): takes pool -> weight tokens from the rate-limited pools and returns the seconds
    #: to wait before the call so their rates hold (`PoolManager.take_tokens`). Thread-safe.
    #: Without pools configured it takes nothing and returns 0.
    take_tokens: Callable[[Mapping[str, int]], float] = field(default=_no_tokens)
    #: The service behind pools pushed back while an attempt runs (an HTTP 429 with
    #: Retry-After): pool -> seconds during which they grant nothing new, applied at once (a
    #: status's `pushback` waits for the engine's next look at the attempt). Thread-safe.
    pushback: Callable[[Mapping[str, float]], None] = field(default=_no_pushback)
    #: Sizes a pool from the service it protects (a cluster's free task slots), for a backend
    #: whose capacity changes: `set_pool_capacity(pool, slots)` makes the engine grant at
    #: most `slots` of `[pools.<pool>]` from then on (clipped to its configured `slots`,
    #: which stay the ceiling that tasks' requests are checked against; 0 grants nothing,
    #: held leases are kept); `None` goes back to the configured slots. Call it again
    #: whenever the capacity may have changed: it holds for this engine process only.
    #: Thread-safe. Raises `LookupError` for a pool the config does not declare.
    set_pool_capacity: Callable[[str, int | None], None] = field(default=_no_capacity)
    #: `[engine] max_output_bytes`: the largest outputs document of an attempt. A backend
    #: that reads a document the task left (to check it or copy it to the store) reads none
    #: larger (`taskfabric.backends.oversized_outputs`); the engine refuses larger ones too.
    max_output_bytes: int = 1 << 30


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    message: str


@dataclass(frozen=True)
class PoolRequest:
    """Slots of a named resource pool that an attempt holds while it runs."""

    pool: str
    weight: int = 1


SettingsT = TypeVar("SettingsT", bound=BackendSettings)


class Backend(abc.ABC, Generic[SettingsT]):
    """Runs task attempts somewhere and reports how they end.

    The engine calls `submit` once per attempt (`submit_map_items` for items of a map that
    start together, when the backend overrides it), then `poll` whenever the backend calls the
    attempt's `notify` (backends that can tell when work ends) or every `poll_interval`
    seconds (backends that must ask a remote engine). When a timeout fires or the execution is
    aborted it calls `cancel`. After recording an attempt's end it calls `release`.
    """

    #: The name users write in `driver = "..."`; equals the entry-point name.
    driver: ClassVar[str] = ""
    #: The pydantic model of the backend's `[backends.<name>]` settings.
    settings_model: ClassVar[type[BackendSettings]] = BackendSettings
    #: Seconds between polls of running attempts; None if the backend calls `notify`.
    poll_interval: ClassVar[float | None] = None
    #: True when the backend re-attaches: it records each attempt's external handle
    #: (`TaskAttempt.record_handle`) and, given `TaskAttempt.handle` on `submit`, picks up
    #: that work (or its result) instead of starting it again. The conformance suite then
    #: checks it. Attempts of backends that do not are failed as interrupted when their
    #: engine process stopped, and run again as a new attempt.
    reattaches: ClassVar[bool] = False
    #: True when a task's own code, run by this backend, can reach neither the engine's
    #: credentials and config nor any data but its own attempt's: a sandbox, a container, a
    #: remote job. A multi-tenant server (`[server] single_tenant = false`, the default) runs
    #: registered code only on such backends; the in-process `local` and the `subprocess`
    #: backends are not (see docs/server.md, "Isolation").
    isolated: ClassVar[bool] = False
    #: True when `submit`, whenever it starts work, first calls `attempt.record_handle` on
    #: its own thread, before the work can begin (a provisional handle will do). The engine
    #: then commits the attempt's start together with that handle, in one transaction,
    #: instead of one before `submit` and another for the handle. Unset, the start is
    #: committed before `submit` is called.
    handle_before_start: ClassVar[bool] = False

    def __init__(self, name: str, settings: SettingsT, context: BackendContext) -> None:
        self.name = name
        self.settings = settings
        self.context = context

    @abc.abstractmethod
    def submit(self, attempt: TaskAttempt) -> None:
        """Start the attempt. Submitting an attempt_id again must not start it twice; with
        `attempt.handle` set, re-attach to the work an earlier engine process started (see
        `TaskAttempt`)."""

    def submit_map_items(self, attempts: Sequence[TaskAttempt]) -> None:
        """Start several items of one map node as one unit (optional).

        The engine calls it, instead of `submit`, with the attempts of one map node's items
        that start in the same turn of its loop: as many as `[engine] parallelism`, the
        map's `concurrency` and the pools let start at once (a retried item usually comes
        alone). They share the execution and the task template; each has its own
        `attempt_id`, inputs, outputs and `handle`. A backend that can start them together
        (an AWS Batch array job) overrides this; from then on each attempt is polled,
        cancelled, released and retried on its own, exactly as if `submit` had started it,
        and the rules of `submit` hold for each (never twice for one `attempt_id`; given a
        `handle`, re-attach). An exception fails every attempt given (retryable).

        Backends that do not override it get `submit` once per item, each failing alone.
        """
        for attempt in attempts:
            self.submit(attempt)

    @abc.abstractmethod
    def poll(self, attempt_id: str) -> AttemptStatus:
        """The attempt's current state."""

    @abc.abstractmethod
    def cancel(self, attempt_id: str) -> None:
        """Stop the attempt if it is running; no error if it already ended."""

    def release(self, attempt_id: str) -> None:
        """The engine recorded the attempt's end: forget it."""

    def abandon(self, attempt_id: str, handle: str) -> None:
        """An attempt that an earlier engine process started, and whose external `handle` it
        recorded (`TaskAttempt.record_handle`), will never be submitted again: the resumed
        execution ended without reaching it (a failure elsewhere first, a cache hit) and
        recorded it as `Interrupted`. Stop its work if it still runs, without waiting for it
        to end; no error when it has ended or is gone. Called once, after the run, on an
        instance that may never have seen the attempt. The default does nothing: the work
        runs to its end unwatched, and what it writes is never read."""

    def isolation_gaps(self, task: tasks_pb2.TaskTemplate) -> Sequence[str]:
        """Why an attempt of `task` on this `isolated` backend, as configured, would not be
        isolated after all: its settings or the task's own options open a way out (a mount of
        the data root, credentials of the whole blob store, a pod template of the task's own).
        Each reason says what to change; empty when the attempt is isolated. A multi-tenant
        server refuses such a task with these reasons, at launch."""
        return ()

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        """Pools an attempt of `task` needs on this backend (e.g. the cluster's app slots)."""
        return ()

    def check(self) -> CheckResult:
        """Reach the backend's engine, for `taskfabric plugins check`."""
        return CheckResult(True, "nothing to check")

    def close(self) -> None:
        """Release the backend's resources at the end of the engine's life."""


# -- task types ------------------------------------------------------------------------------


class TaskConfig(BaseModel):
    """Base of a task type's config model, the object users pass as `@task(config=...)`.

    Subclasses set `task_type` and `proto_message` (the protobuf message the config travels
    as inside the TaskTemplate). The default conversion maps fields by name through the
    message's JSON form; override `to_proto`/`from_proto` when they differ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_type: ClassVar[str] = ""
    proto_message: ClassVar[type[message.Message] | None] = None

    def check_interface(self, interface: Any) -> None:
        """Called at `@task` decoration with the task's typed interface (its `inputs` and
        `outputs`, dicts of name -> Param/Output): raise ValueError or TypeError when the
        config does not fit it (e.g. a shell script naming an input the task lacks)."""

    def context_parameters(self, hints: Mapping[str, Any]) -> Collection[str]:
        """The parameters of the task's function that its task type passes itself when it
        calls the function (an engine's context object: a Flink environment, a session),
        chosen from `hints` (parameter name -> type hint, as `typing.get_type_hints` gives
        them). They are not inputs: they stay out of the typed interface (a workflow does not
        bind them, their types need no transformer) and are listed in the interface's
        `context` (name -> type hint). Called at `@task` decoration; none by default."""
        return ()

    def to_proto(self) -> message.Message:
        from google.protobuf import json_format

        if self.proto_message is None:
            raise TypeError(f"{type(self).__name__} sets no proto_message")
        msg = self.proto_message()
        json_format.ParseDict(self.model_dump(mode="json", exclude_none=True), msg)
        return msg

    @classmethod
    def from_proto(cls, msg: message.Message) -> TaskConfig:
        from google.protobuf import json_format

        data = json_format.MessageToDict(msg, preserving_proto_field_name=True)
        return cls.model_validate(data)

    @classmethod
    def from_any(cls, packed: any_pb2.Any) -> TaskConfig:
        if cls.proto_message is None:
            raise TypeError(f"{cls.__name__} sets no proto_message")
        msg = cls.proto_message()
        if not packed.Unpack(msg):
            raise TypeError(
                f"task config is a {packed.TypeName()}, not the {msg.DESCRIPTOR.full_name} "
                f"that {cls.__name__} expects"
            )
        return cls.from_proto(msg)


@dataclass
class TaskCall:
    """One run of a task's code: the inputs as Python values, where to work."""

    task: Any  # taskfabric.TaskDefinition
    template: tasks_pb2.TaskTemplate
    config: TaskConfig | None
    inputs: Mapping[str, Any]
    #: A folder of this attempt's own (not shared with other attempts).
    work_dir: Path
    attempt_id: str = ""
    #: Set when the engine gives up on the attempt (cancel, timeout): a task type that runs
    #: something it can stop (a process, a remote job) should watch it and stop.
    cancelled: threading.Event = field(default_factory=threading.Event)


class TaskType(abc.ABC):
    """A kind of task: what running one attempt of it means.

    The `python` task type calls the decorated function. A plugin's task type can run
    something else with the same typed interface: a shell script, a SQL query, a Spark job
    around the function. Backends decide *where* an attempt runs; the task type decides
    *what* runs there.
    """

    #: The task type name, as in `@task(task_type=...)` and the config's [task_types].
    name: ClassVar[str] = ""
    #: The config model users pass as `@task(config=...)`, if the type takes one.
    config_model: ClassVar[type[TaskConfig] | None] = None
    #: The backend name to use when the config file's [task_types] does not say.
    default_backend: ClassVar[str] = "local"
    description: ClassVar[str] = ""

    def config_of(self, template: tasks_pb2.TaskTemplate) -> TaskConfig | None:
        if self.config_model is None or not template.HasField("config"):
            return None
        return self.config_model.from_any(template.config)

    @abc.abstractmethod
    def run(self, call: TaskCall) -> Any:
        """Run the task once; return what the Python function would have returned."""
