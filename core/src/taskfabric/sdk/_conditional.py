"""conditional: branch a workflow on values known only at run time."""

from __future__ import annotations

from typing import Any

from taskfabric.core.v1 import workflow_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.sdk._context import CompileContext, caller_location, current_context, location_text
from taskfabric.sdk._promise import Condition, Promise, as_condition
from taskfabric.types import is_castable, type_str

_ELSE = object()


class ConditionBuilder:
    """Built by `conditional(name)`; see there."""

    def __init__(self, name: str, ctx: CompileContext) -> None:
        self.name = name
        self.ctx = ctx
        loc = caller_location()
        self.loc = loc
        self.location = location_text(loc)
        self.node_id = ctx.next_node_id()
        self.cases: list[tuple[workflow_pb2.BooleanExpression | None, workflow_pb2.Node, Any]] = []
        self.upstream: set[str] = set()
        self._pending: Any = None
        self._captured: workflow_pb2.Node | None = None
        self._done = False

    def _open(self, condition: Any, word: str) -> ConditionBuilder:
        if self._done:
            raise TaskfabricError(f"{self.location}: conditional '{self.name}' is finished")
        if self.ctx.branch is not None:
            self.ctx.issue(
                f"`{word}` before the previous case's `.then(...)`", location=self.location
            )
        if condition is not _ELSE:
            cond = as_condition(condition)
            if cond is None:
                self.ctx.issue(
                    f"conditional '{self.name}': `{word}` needs a condition on workflow "
                    f"values (e.g. `x > 3`), got {condition!r}",
                    location=location_text(caller_location()),
                )
            else:
                for p in cond.promises():
                    if p.node_id:
                        self.upstream.add(p.node_id)
                condition = cond.to_proto(self.ctx, location_text(caller_location()))
        self._pending = condition
        self._captured = None
        self.ctx.branch = self
        return self

    def if_(self, condition: Condition | Promise) -> ConditionBuilder:
        if self.cases:
            self.ctx.issue(
                "`.if_` may only start a conditional: use `.elif_`", location=self.location
            )
        return self._open(condition, "if_")

    def elif_(self, condition: Condition | Promise) -> ConditionBuilder:
        return self._open(condition, "elif_")

    def else_(self) -> ConditionBuilder:
        return self._open(_ELSE, "else_")

    def capture(self, node: workflow_pb2.Node, ctx: CompileContext) -> None:
        if self._captured is not None:
            ctx.issue(
                f"conditional '{self.name}': a case holds exactly one task or sub-workflow "
                "call; wrap several calls in a sub-workflow",
                node=f"{node.id} ({node.name})",
                location=location_text(node.location),
            )
            return
        self._captured = node

    def then(self, result: Any) -> Any:
        """The call to run when the case holds; after `.else_()` returns the outputs."""
        self.ctx.branch = None
        node = self._captured
        if node is None:
            self.ctx.issue(
                f"conditional '{self.name}': `.then(...)` must be given a task or "
                "sub-workflow call, e.g. `.then(double(x=x))`",
                location=location_text(caller_location()),
            )
            node = workflow_pb2.Node()
        cond = None if self._pending is _ELSE else self._pending
        for dep in node.upstream_node_ids:
            self.upstream.add(dep)
        self.cases.append((cond, node, result))
        if self._pending is _ELSE:
            return self._finish(else_error="")
        return self

    def fail(self, message: str) -> Any:
        """After `.else_()`: fail the execution with `message` when no case holds."""
        self.ctx.branch = None
        if self._pending is not _ELSE:
            self.ctx.issue("`.fail(...)` comes after `.else_()`", location=self.location)
        return self._finish(else_error=message or "no case of the conditional held")

    def _finish(self, else_error: str) -> Any:
        self._done = True
        branch = workflow_pb2.BranchNode(else_error=else_error)
        outputs = None
        for cond, node, _ in self.cases:
            if cond is None:
                branch.else_node.CopyFrom(node)
            else:
                branch.cases.add(condition=cond, then_node=node)
            outs = list(node.interface.outputs)
            if outputs is None:
                outputs = outs
            elif [o.name for o in outs] != [o.name for o in outputs] or not all(
                is_castable(a.type, b.type) for a, b in zip(outs, outputs, strict=True)
            ):
                self.ctx.issue(
                    f"conditional '{self.name}': every case must produce the same outputs; "
                    f"'{node.name}' gives ({_sig(outs)}) but the first case gives "
                    f"({_sig(outputs)})",
                    location=location_text(node.location),
                )
        if else_error and outputs:
            # With a failing else, the branch still produces the cases' outputs.
            pass
        node = workflow_pb2.Node(
            id=self.node_id,
            name=self.name,
            location=self.loc,
            upstream_node_ids=sorted(self.upstream),
            branch=branch,
        )
        node.interface.outputs.extend(outputs or [])
        self.ctx.add_node(node)
        first = self.cases[0][2] if self.cases else None
        return _reshape(first, self.node_id, self.name, outputs or [])


def _sig(outs: Any) -> str:
    return ", ".join(f"{o.name}: {type_str(o.type)}" for o in outs)


def _reshape(template: Any, node_id: str, label: str, outputs: Any) -> Any:
    by_name = {
        o.name: Promise(
            workflow_pb2.BindingData(
                output=workflow_pb2.OutputReference(node_id=node_id, output=o.name)
            ),
            o.type,
            None,
            origin=f"output '{o.name}' of conditional '{label}' ({node_id})",
            node_id=node_id,
        )
        for o in outputs
    }
    if isinstance(template, Promise):
        return by_name.get("o0", next(iter(by_name.values()), None))
    if isinstance(template, tuple):
        values = [by_name[o.name] for o in outputs]
        return type(template)(*values) if hasattr(template, "_fields") else tuple(values)
    return None


def conditional(name: str) -> ConditionBuilder:
    """Branch on run-time values inside a workflow.

    ```python
    result = (
        conditional("size")
        .if_(n > 100).then(big(n=n))
        .elif_((n > 10) & (n <= 100)).then(medium(n=n))
        .else_().then(small(n=n))
    )
    ```
    Each case holds one task or sub-workflow call; all cases produce the same outputs,
    which the conditional returns. `.else_().fail("message")` fails the execution when no
    case holds.
    """
    ctx = current_context()
    if ctx is None:
        raise TaskfabricError(
            "conditional(...) only works inside a @workflow body; in plain Python use `if`"
        )
    return ConditionBuilder(name, ctx)
