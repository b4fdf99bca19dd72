"""@task: a typed Python function that the engine can run."""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from google.protobuf import any_pb2, message

from taskfabric.core.v1 import identifier_pb2, tasks_pb2, types_pb2, workflow_pb2
from taskfabric.errors import TaskDefinitionError
from taskfabric.sdk._context import CompileContext, caller_location, current_context, location_text
from taskfabric.sdk._interface import PyInterface, describe_function, extract_interface
from taskfabric.sdk._promise import Promise, bind
from taskfabric.sdk._settings import (
    Cache,
    Resources,
    Retry,
    SupportsImageRef,
    TaskSettings,
    check_backend_options,
    check_image,
    duration_proto,
    image_ref,
    to_timedelta,
)
from taskfabric.sdk._source_version import source_version

P = ParamSpec("P")


class Callee(Protocol):
    """What a node call needs of its target: a task, a workflow or a mapped task."""

    short_name: str
    interface: PyInterface


R = TypeVar("R")


def _config_message(config: Any) -> message.Message | None:
    if config is None:
        return None
    if isinstance(config, message.Message):
        return config
    to_proto = getattr(config, "to_proto", None)
    if callable(to_proto):
        msg = to_proto()
        if isinstance(msg, message.Message):
            return msg
    raise TypeError(
        f"task config {config!r} is neither a protobuf message nor an object with a "
        "to_proto() method returning one; pass the config object of the task type's plugin"
    )


class TaskDefinition(Generic[P, R]):
    """A decorated task. Calling it outside a workflow calls the plain function."""

    def __init__(
        self,
        fn: Callable[P, R],
        settings: TaskSettings,
        *,
        config: Any = None,
        name: str | None = None,
    ) -> None:
        self.function = fn
        self.settings = settings
        self.config = config
        self.short_name: str = fn.__name__
        self.name: str = name or f"{fn.__module__}.{fn.__qualname__}"
        context = getattr(config, "context_parameters", None)
        self.interface: PyInterface = extract_interface(
            fn, kind="task", context=context if callable(context) else None
        )
        check = getattr(config, "check_interface", None)
        if callable(check):
            try:
                check(self.interface)
            except (TypeError, ValueError) as exc:
                file, line = describe_function(fn)
                raise TaskDefinitionError(
                    f"{file}:{line}: task '{fn.__qualname__}': {type(config).__name__} config "
                    f"does not fit the task: {exc}"
                ) from exc
        self._config_msg = _config_message(config)
        functools.update_wrapper(self, fn)
        self._template: tasks_pb2.TaskTemplate | None = None

    def __repr__(self) -> str:
        return f"<task {self.name}{self.interface.signature_str()}>"

    @property
    def task_type(self) -> str:
        return self.settings.task_type

    def template(self) -> tasks_pb2.TaskTemplate:
        """The TaskTemplate (project, domain and version are filled in when registered)."""
        if self._template is None:
            s = self.settings
            file, line = describe_function(self.function)
            t = tasks_pb2.TaskTemplate(
                id=identifier_pb2.Identifier(
                    resource_type=identifier_pb2.ResourceType.RESOURCE_TYPE_TASK,
                    name=self.name,
                ),
                type=s.task_type,
                interface=self.interface.proto,
                retry=s.retry.to_proto(),
                timeout=duration_proto(s.timeout),
                function=tasks_pb2.PythonFunction(
                    module=self.function.__module__,
                    qualname=self.function.__qualname__,
                    source_file=file,
                    line=line,
                ),
                description=(self.function.__doc__ or "").strip(),
                container_image=s.container_image,
            )
            if s.cache is not None:
                t.cache.CopyFrom(s.cache.to_proto())
                if not t.cache.version:
                    t.cache.version = source_version(self.function)
            if s.requests is not None:
                t.resources.requests.CopyFrom(s.requests.to_proto())
            if s.limits is not None:
                t.resources.limits.CopyFrom(s.limits.to_proto())
            for pool, weight in sorted(s.pools.items()):
                t.pools.add(pool=pool, weight=weight)
            if s.backend_options:
                t.backend_options.update(s.backend_options)
            if self._config_msg is not None:
                packed = any_pb2.Any()
                packed.Pack(self._config_msg)
                t.config.CopyFrom(packed)
            self._template = t
        return self._template

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = current_context()
        if ctx is None:
            return self.function(*args, **kwargs)
        return self._add_node(ctx, args, dict(kwargs))  # type: ignore[no-any-return]

    def _register_in(self, ctx: CompileContext, label: str, location: str) -> None:
        known = ctx.tasks.get(self.name)
        if known is not None and known is not self:
            ctx.issue(
                f"two different tasks are named '{self.name}': give one of them @task(name=...)",
                node=label,
                location=location,
            )
        ctx.tasks[self.name] = self

    def _add_node(self, ctx: CompileContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loc = caller_location()
        location = location_text(loc)
        node_id = ctx.next_node_id()
        bindings, upstream, _ = bind_call(
            self, ctx, args, kwargs, node_id=node_id, location=location
        )
        self._register_in(ctx, f"{node_id} ({self.short_name})", location)
        node = workflow_pb2.Node(
            id=node_id,
            name=self.short_name,
            location=loc,
            inputs=bindings,
            upstream_node_ids=sorted(upstream),
            task=workflow_pb2.TaskNode(task_id=self.template().id),
        )
        node.interface.outputs.extend(self.interface.proto.outputs)
        ctx.add_node(node)
        return output_promises(node_id, self.short_name, self.interface)


def bind_call(
    target: Callee,
    ctx: CompileContext,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    node_id: str,
    location: str,
    mapped: bool = False,
) -> tuple[list[workflow_pb2.Binding], set[str], list[str]]:
    """Bind call arguments to this task's inputs, recording problems on ctx.

    With `mapped=True` (map_task), list arguments whose elements fit an input are
    mapped element by element; the names of mapped inputs are returned.
    """
    from taskfabric.types import is_castable, type_str

    params = list(target.interface.inputs.values())
    label = f"{node_id} ({target.short_name})"
    if len(args) > len(params):
        ctx.issue(
            f"takes {len(params)} inputs but {len(args)} were given positionally",
            node=label,
            location=location,
        )
        args = args[: len(params)]
    given: dict[str, Any] = {}
    for p, value in zip(params, args, strict=False):
        given[p.name] = value
    for key, value in kwargs.items():
        if key not in target.interface.inputs:
            expected = ", ".join(f"{p.name}: {type_str(p.literal_type)}" for p in params) or "none"
            ctx.issue(
                f"unknown input; task '{target.short_name}' takes: {expected}",
                node=label,
                input=key,
                location=location,
            )
            continue
        if key in given:
            ctx.issue(
                "given both positionally and by name", node=label, input=key, location=location
            )
        given[key] = value
    bindings: list[workflow_pb2.Binding] = []
    upstream: set[str] = set()
    mapped_inputs: list[str] = []
    for p in params:
        if p.name not in given:
            if p.required:
                ctx.issue(
                    f"missing input of type {type_str(p.literal_type)}: pass "
                    f"{p.name}=... to '{target.short_name}'",
                    node=label,
                    input=p.name,
                    location=location,
                )
                continue
            default = target.interface.proto.inputs[params.index(p)].default
            bindings.append(
                workflow_pb2.Binding(var=p.name, binding=workflow_pb2.BindingData(literal=default))
            )
            continue
        value = given[p.name]
        if (
            mapped
            and isinstance(value, Promise)
            and value.literal_type.WhichOneof("type") == "list_type"
            and not is_castable(value.literal_type, p.literal_type)
        ):
            if not is_castable(value.literal_type.list_type, p.literal_type):
                ctx.issue(
                    f"expected list[{type_str(p.literal_type)}] to map over (or "
                    f"{type_str(p.literal_type)} to pass to every run), got "
                    f"{type_str(value.literal_type)} from {value.origin}",
                    node=label,
                    input=p.name,
                    location=location,
                )
            if value.node_id:
                upstream.add(value.node_id)
            mapped_inputs.append(p.name)
            bindings.append(workflow_pb2.Binding(var=p.name, binding=value.binding))
            continue
        if (
            mapped
            and isinstance(value, list)
            and typing.get_origin(p.py_type) is not list
            and p.literal_type.WhichOneof("type") != "list_type"
        ):
            # A list given in the workflow body (constants and/or promises): map over it.
            data = bind(
                value,
                types_pb2.LiteralType(list_type=p.literal_type),
                list[p.py_type],  # type: ignore[name-defined]
                ctx,
                node=label,
                input=p.name,
                location=location,
                upstream=upstream,
            )
            mapped_inputs.append(p.name)
            bindings.append(workflow_pb2.Binding(var=p.name, binding=data))
            continue
        data = bind(
            value,
            p.literal_type,
            p.py_type,
            ctx,
            node=label,
            input=p.name,
            location=location,
            upstream=upstream,
        )
        bindings.append(workflow_pb2.Binding(var=p.name, binding=data))
    return bindings, upstream, mapped_inputs


def output_promises(
    node_id: str, label: str, interface: PyInterface, *, as_list: bool = False
) -> Any:
    """The promises a node call returns, shaped like the function's return value."""
    from taskfabric.types import default_engine

    promises: dict[str, Promise] = {}
    for out in interface.outputs.values():
        lt = out.literal_type
        py_type = out.py_type
        if as_list:
            lt = default_engine().literal_type(list[py_type])  # type: ignore[valid-type]
            py_type = list[py_type]  # type: ignore[valid-type]
        promises[out.name] = Promise(
            workflow_pb2.BindingData(
                output=workflow_pb2.OutputReference(node_id=node_id, output=out.name)
            ),
            lt,
            py_type,
            origin=f"output '{out.name}' of node '{node_id}' ({label})",
            node_id=node_id,
        )
    return interface.unpack_outputs(promises)


@overload
def task(fn: Callable[P, R], /) -> TaskDefinition[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    retries: int | Retry = 0,
    timeout: timedelta | float | None = None,
    cache: bool | Cache = False,
    resources: Resources | None = None,
    requests: Resources | None = None,
    limits: Resources | None = None,
    pools: Mapping[str, int] | None = None,
    task_type: str | None = None,
    config: Any = None,
    container_image: str | SupportsImageRef | None = None,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> Callable[[Callable[P, R]], TaskDefinition[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retries: int | Retry = 0,
    timeout: timedelta | float | None = None,
    cache: bool | Cache = False,
    resources: Resources | None = None,
    requests: Resources | None = None,
    limits: Resources | None = None,
    pools: Mapping[str, int] | None = None,
    task_type: str | None = None,
    config: Any = None,
    container_image: str | SupportsImageRef | None = None,
    backend_options: Mapping[str, Mapping[str, Any]] | None = None,
) -> TaskDefinition[P, R] | Callable[[Callable[P, R]], TaskDefinition[P, R]]:
    """Declare a task: a typed function the engine runs, retries, times out and caches.

    - `retries`: a number of retries (1 s backoff, doubling) or a `Retry(...)`.
    - `timeout`: per attempt, a timedelta or seconds.
    - `cache`: `True` or `Cache(version=..., ignored_inputs=..., ttl=...)`.
    - `resources`: `Resources(cpu=..., memory=..., gpu=...)`, what the task needs and may
      use at most (its requests and its limits); `requests` / `limits` set one side apart
      and win over `resources`. Container backends make the limits the container's (an
      out-of-memory kill is a clear task error); Kubernetes and AWS Batch use both.
    - `pools`: resource pools to hold while running, e.g. `{"geo-api": 1}`.
    - `task_type` / `config`: the task type (default "python") and a plugin's config
      object; a config object may carry its own `task_type`.
    - `container_image`: the image container backends run this task in (default: the
      registration's `--image`, else the backend's own); other backends ignore it. A
      reference (`"ghcr.io/acme/etl:3f9c0a1"`) or an object with an `image_ref()` method,
      such as taskfabric-containers' `ImageSpec`.
    - `backend_options`: settings of backends for this task, by driver name, e.g.
      `{"podman": {"network": "bridge", "env": {"MODE": "fast"}}}`: each backend reads its
      own driver's entry and lets a task set only what its operator allows (see the
      plugin's guide); backends of other drivers ignore it.
    """

    def decorate(f: Callable[P, R]) -> TaskDefinition[P, R]:
        where = "{}:{}".format(*describe_function(f))
        try:
            retry = retries if isinstance(retries, Retry) else Retry(retries=int(retries))
            cache_cfg = Cache() if cache is True else (cache or None)
            pool_map = {str(k): int(v) for k, v in (pools or {}).items()}
            for pool, weight in pool_map.items():
                if weight < 1:
                    raise ValueError(f"pool '{pool}' weight must be >= 1 (got {weight})")
            ttype = task_type or getattr(config, "task_type", None) or "python"
            settings = TaskSettings(
                retry=retry,
                timeout=to_timedelta(timeout, "timeout"),
                cache=cache_cfg if isinstance(cache_cfg, Cache) else None,
                requests=requests if requests is not None else resources,
                limits=limits if limits is not None else resources,
                pools=pool_map,
                task_type=str(ttype),
                container_image=check_image(image_ref(container_image)) if container_image else "",
                backend_options=check_backend_options(backend_options or {}),
            )
        except (TypeError, ValueError) as exc:
            raise TaskDefinitionError(f"{where}: task '{f.__qualname__}': {exc}") from exc
        return TaskDefinition(f, settings, config=config, name=name)

    if fn is not None:
        return decorate(fn)
    return decorate
