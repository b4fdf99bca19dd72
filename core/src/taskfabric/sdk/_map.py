"""map_task: run a task once per element of a list, with a parallelism bound."""

from __future__ import annotations

from typing import Any

from taskfabric.core.v1 import workflow_pb2
from taskfabric.sdk._context import caller_location, current_context, location_text
from taskfabric.sdk._task import TaskDefinition, bind_call, output_promises


class MapTask:
    """A task mapped over lists. Each output becomes a list, in input order."""

    def __init__(self, task: TaskDefinition[Any, Any], concurrency: int = 0) -> None:
        if not isinstance(task, TaskDefinition):
            raise TypeError(f"map_task takes a @task, got {task!r}")
        if concurrency < 0:
            raise ValueError(f"map_task concurrency must be >= 0 (got {concurrency})")
        self.task = task
        self.concurrency = concurrency
        self.short_name = f"map_{task.short_name}"
        self.interface = task.interface

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        ctx = current_context()
        if ctx is None:
            return self._run_locally(args, kwargs)
        loc = caller_location()
        location = location_text(loc)
        node_id = ctx.next_node_id()
        label = f"{node_id} ({self.short_name})"
        bindings, upstream, mapped = bind_call(
            self.task, ctx, args, kwargs, node_id=node_id, location=location, mapped=True
        )
        if not mapped and not any(i.node == label for i in ctx.issues):
            ctx.issue(
                "map_task needs at least one input bound to a list of elements to map over; "
                "every input given fits the task as is — call the task directly instead",
                node=label,
                location=location,
            )
        self.task._register_in(ctx, label, location)
        node = workflow_pb2.Node(
            id=node_id,
            name=self.short_name,
            location=loc,
            inputs=bindings,
            upstream_node_ids=sorted(upstream),
            map=workflow_pb2.MapNode(
                task_id=self.task.template().id,
                concurrency=self.concurrency,
                mapped_inputs=mapped,
            ),
        )
        promises = output_promises(node_id, self.short_name, self.interface, as_list=True)
        for out in self.interface.outputs.values():
            node.interface.outputs.add(
                name=out.name,
                type=_list_type(out.literal_type),
            )
        ctx.add_node(node)
        return promises

    def _run_locally(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Plain-Python behaviour for unit tests: zip the list inputs, call, collect."""
        params = list(self.interface.inputs)
        given = dict(zip(params, args, strict=False))
        given.update(kwargs)
        mapped = {
            k: v
            for k, v in given.items()
            if isinstance(v, list) and not _accepts_list(self.interface.inputs[k].py_type)
        }
        lengths = {len(v) for v in mapped.values()}
        if len(lengths) > 1:
            raise ValueError(f"mapped inputs have different lengths: {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        results = []
        for i in range(n):
            call = {k: (v[i] if k in mapped else v) for k, v in given.items()}
            results.append(self.task.function(**call))
        if self.interface.output_kind == "none":
            return None
        if self.interface.output_kind == "single":
            return results
        columns = {name: [] for name in self.interface.outputs}  # type: dict[str, list[Any]]
        for r in results:
            for name, value in self.interface.pack_outputs(r).items():
                columns[name].append(value)
        return self.interface.unpack_outputs(columns)


def _accepts_list(py_type: Any) -> bool:
    import typing

    return typing.get_origin(py_type) is list or py_type is list


def _list_type(lt: Any) -> Any:
    from taskfabric.core.v1 import types_pb2

    return types_pb2.LiteralType(list_type=lt)


def map_task(task: TaskDefinition[Any, Any], *, concurrency: int = 0) -> MapTask:
    """Map `task` over list inputs: `map_task(square, concurrency=4)(x=numbers)`.

    Inputs bound to a list of the task's input type are mapped element by element (all
    mapped lists must have the same length); other inputs are passed to every run. At most
    `concurrency` elements run at once (0: bounded by the engine's parallelism only).
    """
    return MapTask(task, concurrency)
