"""Stamping project, domain and version into templates, and diffs between two templates.

Every `Identifier` of a registered template carries the project, domain and version it was
registered under: a workflow's own id, its sub-workflows' ids, the ids of its tasks and every
node's reference to them (inside branches too). Source paths become relative to the code root,
so that registering the same code from another checkout gives the same bytes.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Callable
from pathlib import Path

from google.protobuf import message, text_format

from taskfabric.core.v1 import identifier_pb2, launch_plan_pb2, tasks_pb2, workflow_pb2

PathMapper = Callable[[str], str]


def relative_path(root: Path) -> PathMapper:
    """Maps a source file to a path relative to `root`; a file elsewhere (an installed
    package) to its path relative to the `sys.path` entry it was imported from."""
    resolved_root = root.resolve()
    bases = sorted(
        {Path(p).resolve() for p in sys.path if p and Path(p).is_dir()},
        key=lambda p: len(p.parts),
        reverse=True,
    )

    def mapped(file: str) -> str:
        if not file or file.startswith("<"):
            return file
        path = Path(file).resolve()
        if path.is_relative_to(resolved_root):
            return path.relative_to(resolved_root).as_posix()
        for base in bases:
            if path.is_relative_to(base):
                return path.relative_to(base).as_posix()
        return path.name

    return mapped


def _stamp_id(ident: identifier_pb2.Identifier, project: str, domain: str, version: str) -> None:
    ident.project, ident.domain, ident.version = project, domain, version


def _stamp_node(
    node: workflow_pb2.Node, project: str, domain: str, version: str, paths: PathMapper
) -> None:
    if node.HasField("location"):
        node.location.file = paths(node.location.file)
    target = node.WhichOneof("target")
    if target == "task":
        _stamp_id(node.task.task_id, project, domain, version)
    elif target == "workflow":
        _stamp_id(node.workflow.workflow_id, project, domain, version)
    elif target == "map":
        _stamp_id(node.map.task_id, project, domain, version)
    elif target == "branch":
        for case in node.branch.cases:
            _stamp_node(case.then_node, project, domain, version, paths)
        if node.branch.HasField("else_node"):
            _stamp_node(node.branch.else_node, project, domain, version, paths)


def _stamp_template(
    template: workflow_pb2.WorkflowTemplate,
    project: str,
    domain: str,
    version: str,
    paths: PathMapper,
) -> None:
    _stamp_id(template.id, project, domain, version)
    if template.HasField("location"):
        template.location.file = paths(template.location.file)
    for node in template.nodes:
        _stamp_node(node, project, domain, version, paths)


def stamp_task(
    template: tasks_pb2.TaskTemplate,
    project: str,
    domain: str,
    version: str,
    paths: PathMapper,
    image: str = "",
) -> tasks_pb2.TaskTemplate:
    """A copy of `template` registered under project/domain/version; `image` is the
    registration's container image, for a task that names none itself."""
    out = tasks_pb2.TaskTemplate()
    out.CopyFrom(template)
    _stamp_id(out.id, project, domain, version)
    if out.HasField("function"):
        out.function.source_file = paths(out.function.source_file)
    if image and not out.container_image:
        out.container_image = image
    return out


def stamp_workflow(
    compiled: workflow_pb2.CompiledWorkflow,
    project: str,
    domain: str,
    version: str,
    paths: PathMapper,
    image: str = "",
) -> workflow_pb2.CompiledWorkflow:
    """A copy of `compiled` with every identifier registered under project/domain/version
    (and `image` in its tasks that name no container image)."""
    out = workflow_pb2.CompiledWorkflow()
    out.CopyFrom(compiled)
    _stamp_template(out.primary, project, domain, version, paths)
    for sub in out.subworkflows:
        _stamp_template(sub, project, domain, version, paths)
    for i, task in enumerate(compiled.tasks):
        out.tasks[i].CopyFrom(stamp_task(task, project, domain, version, paths, image))
    return out


def stamp_launch_plan(
    spec: launch_plan_pb2.LaunchPlanSpec, project: str, domain: str, version: str
) -> launch_plan_pb2.LaunchPlanSpec:
    out = launch_plan_pb2.LaunchPlanSpec()
    out.CopyFrom(spec)
    _stamp_id(out.id, project, domain, version)
    _stamp_id(out.workflow_id, project, domain, version)
    return out


def text_diff(old: message.Message, new: message.Message, label: str) -> str:
    """A unified diff of two templates in protobuf text format."""
    a = text_format.MessageToString(old).splitlines(keepends=True)
    b = text_format.MessageToString(new).splitlines(keepends=True)
    return "".join(
        difflib.unified_diff(a, b, fromfile=f"{label} (registered)", tofile=f"{label} (new)")
    )
