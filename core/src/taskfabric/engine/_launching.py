"""What a launch and a resume check about a workflow: its inputs as literals, where its
code lives (so a resume can load it again, or hand it to the attempts' processes), whether
its DAG is still the recorded one, and whether a backend isolates its code; and a new
execution's documents and row (`create_execution`)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from taskfabric.bundles import bundle_root
from taskfabric.core.v1 import tasks_pb2, types_pb2, workflow_pb2
from taskfabric.engine._loader import load_code
from taskfabric.engine._owners import this_owner
from taskfabric.engine._state import QUEUED, RUNNING
from taskfabric.engine._util import kept_per_object
from taskfabric.errors import TaskfabricError
from taskfabric.metadata import ExecutionRecord, MetadataStore, integrity_errors
from taskfabric.plugin_api import Backend
from taskfabric.sdk import TaskDefinition, WorkflowDefinition
from taskfabric.storage import BlobStore, PackStore
from taskfabric.types import TransformContext, default_engine, type_str


def convert_inputs(
    wf: WorkflowDefinition[Any, Any], inputs: Mapping[str, Any], ctx: TransformContext
) -> types_pb2.LiteralMap:
    """The workflow's inputs as literals: given values converted, defaults filled in."""
    engine = default_engine()
    unknown = sorted(set(inputs) - set(wf.interface.inputs))
    if unknown:
        expected = ", ".join(
            f"{p.name}: {type_str(p.literal_type)}" for p in wf.interface.inputs.values()
        )
        raise TaskfabricError(
            f"workflow '{wf.short_name}' has no input named {', '.join(unknown)}; "
            f"its inputs are: {expected or 'none'}"
        )
    out = types_pb2.LiteralMap()
    for i, (name, param) in enumerate(wf.interface.inputs.items()):
        if name in inputs:
            try:
                lit = engine.to_literal(inputs[name], param.py_type, ctx)
            except Exception as exc:
                raise TaskfabricError(
                    f"workflow '{wf.short_name}', input '{name}': expected "
                    f"{type_str(param.literal_type)}: {exc}"
                ) from exc
            out.literals[name].CopyFrom(lit)
        elif param.required:
            raise TaskfabricError(
                f"workflow '{wf.short_name}' needs input '{name}' ({type_str(param.literal_type)})"
            )
        else:
            out.literals[name].CopyFrom(wf.interface.proto.inputs[i].default)
    return out


def code_of(wf: WorkflowDefinition[Any, Any]) -> dict[str, str]:
    """Where the workflow's function is defined: its file (or module) and qualified name."""
    module = sys.modules.get(wf.function.__module__)
    file = getattr(module, "__file__", None)
    if file:
        return {"file": os.path.abspath(file), "object": wf.function.__qualname__}
    return {"module": wf.function.__module__, "object": wf.function.__qualname__}


def same_dag(a: workflow_pb2.WorkflowTemplate, b: workflow_pb2.WorkflowTemplate) -> bool:
    """Whether two templates have the same nodes, bindings and types (source lines and
    descriptions do not count)."""
    return _dag(a) == _dag(b)


def _dag(template: workflow_pb2.WorkflowTemplate) -> bytes:
    copy = workflow_pb2.WorkflowTemplate()
    copy.CopyFrom(template)
    copy.ClearField("location")
    copy.ClearField("description")

    def strip(node: workflow_pb2.Node) -> None:
        node.ClearField("location")
        if node.WhichOneof("target") == "branch":
            for case in node.branch.cases:
                strip(case.then_node)
            if node.branch.HasField("else_node"):
                strip(node.branch.else_node)

    for node in copy.nodes:
        strip(node)
    return copy.SerializeToString(deterministic=True)


def not_a_workflow(obj: object, what: str) -> str:
    """Why `obj` cannot be launched, and what to launch instead."""
    if isinstance(obj, TaskDefinition):
        return (
            f"{what} runs a workflow, and {obj.name} is a task: call it from a @workflow "
            f"function (`return {obj.short_name}(...)`) and launch that workflow"
        )
    return f"{what} runs a @workflow, not {type(obj).__name__} {obj!r:.80}"


@kept_per_object(8)  # a few: a server's engine launches many workflows
def _workflow_document(compiled: workflow_pb2.CompiledWorkflow) -> bytes:
    """The bytes of an execution's `workflow.pb`, kept per compiled workflow
    (`kept_per_object`): encoding a chain of 100 nodes cost as many instructions as a tenth
    of its run from the cache."""
    return compiled.SerializeToString(deterministic=True)


class ExecutionNameTakenError(TaskfabricError):
    """Another execution of the project and domain has the name."""


def create_execution(
    metadata: MetadataStore,
    literals: PackStore,
    compiled: workflow_pb2.CompiledWorkflow,
    inputs: types_pb2.LiteralMap,
    *,
    execution_id: str,
    project: str,
    domain: str,
    name: str,
    code: Mapping[str, str],
    run_here: bool,
    **columns: Any,
) -> ExecutionRecord:
    """Store a new execution's inputs and workflow and insert its row: RUNNING and owned
    by this process when it runs here, else QUEUED for a worker. `columns` sets further
    execution columns. Raises ExecutionNameTakenError when the name is taken (and
    deletes the documents it stored)."""
    root = literals.store.uri("executions", execution_id)
    # Small documents go to the execution's pack segment of the loop's own (deferred)
    # documents, written here before the row that names them: an execution whose nodes
    # put nothing else (all cache hits) makes one segment file, not two.
    inputs_uri = literals.put(
        root, "inputs.pb", inputs.SerializeToString(deterministic=True), defer=True
    )
    workflow_uri = literals.put(root, "workflow.pb", _workflow_document(compiled), defer=True)
    literals.flush()
    now = time.time()
    rec = ExecutionRecord(
        id=execution_id,
        project=project,
        domain=domain,
        name=name,
        workflow_name=compiled.primary.id.name,
        workflow_version=compiled.primary.id.version,
        phase=RUNNING if run_here else QUEUED,
        created_at=now,
        inputs_uri=inputs_uri,
        workflow_uri=workflow_uri,
        code=dict(code),
    )
    if run_here:
        rec.started_at = rec.heartbeat_at = now
        rec.owner = this_owner()
    for key, value in columns.items():
        if not hasattr(rec, key):
            raise TypeError(f"executions have no column '{key}'")
        setattr(rec, key, value)
    try:
        metadata.create_execution(rec)
    except integrity_errors():
        literals.close_segment(root)
        for uri in list(literals.store.list(root)):  # the documents nobody will read
            literals.store.delete(uri)
        raise ExecutionNameTakenError(
            f"execution name '{name}' is already taken in {project}/{domain}"
        ) from None
    return rec


class CodeNotIsolatedError(TaskfabricError):
    """A multi-tenant engine was asked to run a task on a backend that does not isolate it."""


def not_isolated(
    task: tasks_pb2.TaskTemplate, backend: Backend[Any], gaps: Sequence[str] = ()
) -> CodeNotIsolatedError:
    """The refusal of a task that would run on a backend that does not isolate it (`gaps`:
    why an isolating backend would not, as configured)."""
    where = (
        f"task '{task.id.name}' (task type {task.type}) would run on backend "
        f"'{backend.name}' (driver {backend.driver or '?'})"
    )
    if gaps:
        return CodeNotIsolatedError(
            f"{where}, which as configured does not isolate a project's code: "
            + "; ".join(gaps)
            + ' (docs/server.md, "Isolation"); or, if every project\'s code is trusted, '
            "declare the deployment single-tenant: [server] single_tenant = true"
        )
    return CodeNotIsolatedError(
        f"{where}, which does not isolate a "
        "project's code: it would run with the server's credentials and every project's data "
        f'within reach. Run it on an isolating backend, e.g. [task_types] {task.type} = "sandbox" '
        'with [backends.sandbox] driver = "sandbox" (docs/server.md, "Isolation"); or, if '
        "every project's code is trusted, declare the deployment single-tenant: "
        "[server] single_tenant = true"
    )


def load_tasks(
    rec: ExecutionRecord,
    compiled: workflow_pb2.CompiledWorkflow,
    workflow: WorkflowDefinition[Any, Any] | None,
    store: BlobStore,
    bundles: Path,
) -> Mapping[str, Any]:
    """The execution's task objects, by name: its workflow imported again from the recorded
    code location (which runs the code's module top level in this process)."""
    if workflow is None and "<locals>" in rec.code.get("object", ""):
        raise TaskfabricError(
            f"workflow {rec.code['object']} was defined inside a function, so it cannot "
            "be loaded again; define it at module level, or pass it to Engine.resume()"
        )
    wf = workflow if workflow is not None else load_code(rec.code, store=store, cache_root=bundles)
    if not isinstance(wf, WorkflowDefinition):
        raise TaskfabricError(f"{rec.code} is no longer a @workflow")
    # A registered workflow runs from its immutable code bundle: its DAG cannot differ.
    # Otherwise tasks' code may have changed (fixing a task and resuming is the point),
    # but not the DAG: its nodes, bindings and types (source lines do not count).
    if "bundle" not in rec.code and not same_dag(wf.compile().primary, compiled.primary):
        raise TaskfabricError(
            f"the code of workflow '{wf.short_name}' changed since execution {rec.id} "
            "started (its DAG differs), so it cannot be resumed; launch a new execution"
        )
    return wf.tasks


def code_path_of(code: Mapping[str, str], store: BlobStore, bundles: Path) -> tuple[str, ...]:
    """Where the attempts' processes import a registered execution's code from: its bundle,
    extracted under `bundles` (nothing of it runs here)."""
    if "bundle" not in code:
        return ()
    return (str(bundle_root(code, store, bundles)),)
