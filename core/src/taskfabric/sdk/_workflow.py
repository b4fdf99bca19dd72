"""@workflow: a typed DAG of tasks, compiled and type-checked before anything runs."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar, overload

from taskfabric import _upcalls
from taskfabric.core.v1 import identifier_pb2, workflow_pb2
from taskfabric.errors import CompilationError, CompileIssue, TaskfabricError
from taskfabric.sdk._compiler import validate_compiled
from taskfabric.sdk._context import (
    CompileContext,
    caller_location,
    compiling,
    current_context,
    location_text,
)
from taskfabric.sdk._interface import (
    PyInterface,
    describe_function,
    extract_interface,
    location_str,
)
from taskfabric.sdk._promise import Promise, bind
from taskfabric.sdk._task import bind_call, output_promises

P = ParamSpec("P")
R = TypeVar("R")

#: Runs a workflow called outside a workflow and returns its outputs: `(workflow, inputs)`.
LocalRunner = Callable[["WorkflowDefinition[Any, Any]", Mapping[str, Any]], Any]


def set_local_runner(runner: LocalRunner) -> None:
    """Set what runs a workflow that is called outside a workflow.

    The engine sits above the SDK, so the SDK cannot call it: the package face
    (`taskfabric/__init__.py`, which runs before any of its modules) sets the engine in
    `taskfabric._upcalls`; this sets it there too (tests, embedding applications).
    """
    _upcalls.local_runner = runner


class WorkflowDefinition(Generic[P, R]):
    """A decorated workflow.

    Calling it inside another workflow adds a sub-workflow node; calling it anywhere else
    compiles it and runs it on the configured engine, returning its outputs.
    """

    def __init__(self, fn: Callable[P, R], *, name: str | None = None) -> None:
        self.function = fn
        self.short_name: str = fn.__name__
        self.name: str = name or f"{fn.__module__}.{fn.__qualname__}"
        self.interface: PyInterface = extract_interface(fn, kind="workflow")
        functools.update_wrapper(self, fn)
        self._compiled: workflow_pb2.CompiledWorkflow | None = None
        self._tasks: dict[str, Any] = {}
        self._subworkflows: dict[str, WorkflowDefinition[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"<workflow {self.name}{self.interface.signature_str()}>"

    @property
    def tasks(self) -> dict[str, Any]:
        """Every task this workflow and its sub-workflows call, by task name."""
        self.compile()
        return self._tasks

    def compile(self) -> workflow_pb2.CompiledWorkflow:
        """Build the DAG and type-check every binding; raises CompilationError."""
        if self._compiled is not None:
            return self._compiled
        file, line = describe_function(self.function)
        where = location_str(file, line)
        ctx = CompileContext(self.short_name)
        promises = {
            name: Promise(
                workflow_pb2.BindingData(workflow_input=name),
                p.literal_type,
                p.py_type,
                origin=f"workflow input '{name}'",
            )
            for name, p in self.interface.inputs.items()
        }
        with compiling(ctx):
            result = self.function(**promises)  # type: ignore[arg-type,call-arg]
        if ctx.branch is not None:
            ctx.issue(
                f"conditional '{ctx.branch.name}' is not finished: end it with "
                "`.else_().then(...)` or `.else_().fail(...)`",
                location=ctx.branch.location,
            )
        template = workflow_pb2.WorkflowTemplate(
            id=identifier_pb2.Identifier(
                resource_type=identifier_pb2.ResourceType.RESOURCE_TYPE_WORKFLOW,
                name=self.name,
            ),
            interface=self.interface.proto,
            nodes=ctx.nodes,
            location=workflow_pb2.SourceLocation(file=file, line=line),
            description=(self.function.__doc__ or "").strip(),
        )
        self._bind_outputs(ctx, result, template, where)
        if ctx.issues:
            raise CompilationError(ctx.issues)
        subworkflows: dict[str, workflow_pb2.WorkflowTemplate] = {}
        tasks = dict(ctx.tasks)
        for sub in ctx.subworkflows.values():
            sub_compiled = sub.compile()
            subworkflows[sub.name] = sub_compiled.primary
            for t in sub_compiled.subworkflows:
                subworkflows[t.id.name] = t
            tasks.update(sub.tasks)
        compiled = workflow_pb2.CompiledWorkflow(
            primary=template,
            subworkflows=[subworkflows[k] for k in sorted(subworkflows)],
            tasks=[tasks[k].template() for k in sorted(tasks)],
        )
        problems = validate_compiled(compiled)
        if problems:
            raise CompilationError(problems)
        self._tasks = tasks
        self._subworkflows = dict(ctx.subworkflows)
        self._compiled = compiled
        return compiled

    def _bind_outputs(
        self,
        ctx: CompileContext,
        result: Any,
        template: workflow_pb2.WorkflowTemplate,
        where: str,
    ) -> None:
        if self.interface.output_kind == "none":
            if result is not None:
                ctx.issue(
                    "the function returns a value but its return type is None: annotate "
                    "the return type (e.g. `-> int`) to make it a workflow output",
                    location=where,
                )
            return
        try:
            values = self.interface.pack_outputs(result)
        except TypeError as exc:
            ctx.issue(f"outputs: {exc}", location=where)
            return
        for name, out in self.interface.outputs.items():
            value = values[name]
            if value is None and out.literal_type.WhichOneof("type") != "union_type":
                ctx.issue(
                    f"output '{name}' ({out.py_type}) is never produced: the function "
                    "returns None for it; return the promise of the task that computes it",
                    location=where,
                )
                continue
            data = bind(
                value,
                out.literal_type,
                out.py_type,
                ctx,
                node="outputs",
                input=name,
                location=where,
                upstream=set(),
            )
            template.outputs.add(var=name, binding=data)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        ctx = current_context()
        if ctx is None:
            run = _upcalls.local_runner
            if run is None:
                raise TaskfabricError(
                    f"cannot run workflow {self.name}: no engine is set to run it "
                    "(taskfabric.sdk.set_local_runner); import taskfabric, which sets it"
                )
            inputs = dict(zip(self.interface.inputs, args, strict=False))
            inputs.update(kwargs)
            return run(self, inputs)  # type: ignore[no-any-return]
        return self._add_node(ctx, args, dict(kwargs))  # type: ignore[no-any-return]

    def _add_node(self, ctx: CompileContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loc = caller_location()
        location = location_text(loc)
        node_id = ctx.next_node_id()
        label = f"{node_id} ({self.short_name})"
        try:
            self.compile()
        except CompilationError as exc:
            for issue in exc.issues:
                ctx.issues.append(
                    CompileIssue(
                        f"{ctx.workflow_name} > {issue.workflow}",
                        issue.message,
                        node=issue.node,
                        input=issue.input,
                        location=issue.location,
                    )
                )
            return output_promises(node_id, self.short_name, self.interface)
        bindings, upstream, _ = bind_call(
            self, ctx, args, kwargs, node_id=node_id, location=location
        )
        known = ctx.subworkflows.get(self.name)
        if known is not None and known is not self:
            ctx.issue(
                f"two different workflows are named '{self.name}'", node=label, location=location
            )
        ctx.subworkflows[self.name] = self
        node = workflow_pb2.Node(
            id=node_id,
            name=self.short_name,
            location=loc,
            inputs=bindings,
            upstream_node_ids=sorted(upstream),
            workflow=workflow_pb2.WorkflowNode(workflow_id=self.compile().primary.id),
        )
        node.interface.outputs.extend(self.interface.proto.outputs)
        ctx.add_node(node)
        return output_promises(node_id, self.short_name, self.interface)


@overload
def workflow(fn: Callable[P, R], /) -> WorkflowDefinition[P, R]: ...


@overload
def workflow(
    *, name: str | None = None
) -> Callable[[Callable[P, R]], WorkflowDefinition[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None, /, *, name: str | None = None
) -> WorkflowDefinition[P, R] | Callable[[Callable[P, R]], WorkflowDefinition[P, R]]:
    """Declare a workflow: its body calls tasks and sub-workflows on promises.

    The body runs once, at compile time, to record the DAG; it must not compute with
    the values themselves (use tasks for that, `map_task` to fan out and `conditional`
    to branch).
    """

    def decorate(f: Callable[P, R]) -> WorkflowDefinition[P, R]:
        return WorkflowDefinition(f, name=name)

    if fn is not None:
        return decorate(fn)
    return decorate
