"""A registration package: the compiled, stamped entities of a source tree plus its bundle.

`build_package` runs where the code is (the user's machine, the CLI): it imports and compiles.
`Registry.record` stores a package and never runs user code, so a server can record packages
that remote clients built (`Package.to_bytes` / `Package.from_bytes` carry them).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from google.protobuf import message

from taskfabric.bundles import Bundle, bundle_digest, create_bundle
from taskfabric.core.v1 import launch_plan_pb2, tasks_pb2, workflow_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.registry._discover import (
    DiscoveryError,
    SourceTree,
    find_objects,
    import_modules,
    isolated_imports,
    source_tree,
)
from taskfabric.registry._stamp import (
    relative_path,
    stamp_launch_plan,
    stamp_task,
    stamp_workflow,
)
from taskfabric.sdk._settings import check_image

TASK = "task"
WORKFLOW = "workflow"
LAUNCH_PLAN = "launch_plan"
KINDS = (TASK, WORKFLOW, LAUNCH_PLAN)

_MESSAGES: dict[str, Callable[[], message.Message]] = {
    TASK: tasks_pb2.TaskTemplate,
    WORKFLOW: workflow_pb2.CompiledWorkflow,
    LAUNCH_PLAN: launch_plan_pb2.LaunchPlanSpec,
}

#: Projects, domains and versions: they appear in blob prefixes and execution names.
SCOPE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}\Z")
_PACKAGE_FORMAT = 1


class PackageError(TaskfabricError):
    """A package cannot be built or read."""


def check_scope(project: str, domain: str, version: str | None = None) -> None:
    """Raise PackageError unless project, domain (and version) are valid names."""
    for what, value in (("project", project), ("domain", domain), ("version", version)):
        if value is None and what == "version":
            continue
        if not isinstance(value, str) or not SCOPE_PATTERN.match(value):
            raise PackageError(
                f"{what} {value!r} is not valid: use 1-255 letters, digits, '_', '.', '+' "
                "or '-', starting with a letter or digit"
            )


def parse_template(kind: str, data: bytes) -> Any:
    """The template message of an entity of `kind` from its bytes."""
    msg = _MESSAGES[kind]()
    msg.ParseFromString(data)
    return msg


@dataclass(frozen=True)
class Entity:
    """One task, workflow or launch plan of a package, its template stamped and serialized.

    `code` says where its object lives inside the bundle (`root`, `module`, `object`); it is
    empty for a task or workflow imported from an installed package rather than the bundle
    (`module` and `object` only).
    """

    kind: str
    name: str
    template: bytes
    code: Mapping[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.template).hexdigest()

    def message(self) -> Any:
        return parse_template(self.kind, self.template)


@dataclass(frozen=True)
class Package:
    project: str
    domain: str
    version: str
    bundle: Bundle
    entities: tuple[Entity, ...]
    #: Files of the tree that were bundled but not imported (setup.py, non-identifier names).
    skipped: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        """The package as one uncompressed tar: manifest.json, the templates, the bundle."""
        manifest = {
            "format": _PACKAGE_FORMAT,
            "project": self.project,
            "domain": self.domain,
            "version": self.version,
            "bundle_digest": self.bundle.digest,
            "skipped": list(self.skipped),
            "entities": [
                {"kind": e.kind, "name": e.name, "digest": e.digest, "code": dict(e.code)}
                for e in self.entities
            ],
        }
        files = [("manifest.json", json.dumps(manifest, sort_keys=True).encode())]
        files += [(f"entities/{i}.pb", e.template) for i, e in enumerate(self.entities)]
        files.append(("bundle.tar.gz", self.bundle.data))
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, data in files:
                info = tarfile.TarInfo(name)
                info.size, info.mtime, info.mode = len(data), 0, 0o644
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Package:
        """Read and check a package made by `to_bytes` (digests, kinds, stamped ids)."""
        try:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                files: dict[str, bytes] = {}
                for member in tar:
                    fh = tar.extractfile(member) if member.isreg() else None
                    if fh is not None:
                        files[member.name] = fh.read()
            manifest = json.loads(files["manifest.json"])
        except (tarfile.TarError, KeyError, ValueError) as exc:
            raise PackageError(f"not a registration package: {exc}") from exc
        if manifest.get("format") != _PACKAGE_FORMAT:
            raise PackageError(f"unknown package format {manifest.get('format')!r}")
        bundle = Bundle(files.get("bundle.tar.gz", b""), manifest["bundle_digest"])
        if bundle_digest(bundle.data) != bundle.digest:
            raise PackageError("the package's code bundle does not match its digest")
        entities = []
        for i, item in enumerate(manifest["entities"]):
            if item["kind"] not in KINDS:
                raise PackageError(f"unknown entity kind {item['kind']!r}")
            entity = Entity(item["kind"], item["name"], files[f"entities/{i}.pb"], item["code"])
            if entity.digest != item["digest"]:
                raise PackageError(f"{entity.kind} {entity.name}: template digest mismatch")
            entities.append(entity)
        package = cls(
            manifest["project"],
            manifest["domain"],
            manifest["version"],
            bundle,
            tuple(entities),
            tuple(manifest.get("skipped", ())),
        )
        package.check()
        return package

    def check(self) -> None:
        """Raise PackageError unless every identifier is stamped with this package's scope."""
        check_scope(self.project, self.domain, self.version)
        scope = (self.project, self.domain, self.version)
        for e in self.entities:
            msg = e.message()
            ids = []
            if e.kind == TASK:
                ids = [msg.id]
            elif e.kind == WORKFLOW:
                ids = [msg.primary.id, *(s.id for s in msg.subworkflows)]
                ids += [t.id for t in msg.tasks]
            else:
                ids = [msg.id, msg.workflow_id]
            for ident in ids:
                if (ident.project, ident.domain, ident.version) != scope:
                    raise PackageError(
                        f"{e.kind} {e.name}: identifier {ident.name} is stamped "
                        f"{ident.project}/{ident.domain}/{ident.version}, not {'/'.join(scope)}"
                    )
            own = msg.primary.id.name if e.kind == WORKFLOW else msg.id.name
            if own != e.name:
                raise PackageError(f"{e.kind} {e.name}: the template names another entity")
        workflows = {e.name for e in self.entities if e.kind == WORKFLOW}
        for e in self.entities:
            if e.kind == LAUNCH_PLAN and e.message().workflow_id.name not in workflows:
                raise PackageError(
                    f"launch plan {e.name}: its workflow {e.message().workflow_id.name} is not "
                    "in the package"
                )


def _code_of(obj: Any, fn: Any, tree: SourceTree) -> dict[str, str]:
    """Where `obj` (defined by function `fn`, or a launch plan) lives in the bundle."""
    import sys

    module_name = fn.__module__ if fn is not None else obj.module
    if fn is not None:
        qualname = fn.__qualname__
    else:
        module = sys.modules.get(module_name)
        qualname = next((k for k, v in vars(module).items() if v is obj), "") if module else ""
    if "<locals>" in qualname:
        raise DiscoveryError(
            f"{obj!r} is defined inside a function ({module_name}.{qualname}); a worker "
            "cannot import it: define it at module level"
        )
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    root = tree.root.resolve()
    in_bundle = bool(file) and Path(str(file)).resolve().is_relative_to(root)
    if not in_bundle:
        return {"module": module_name, "object": qualname}
    return {"root": "", "module": module_name, "object": qualname}


def _serialize(msg: message.Message) -> bytes:
    return msg.SerializeToString(deterministic=True)


def build_package(
    path: Path, *, project: str, domain: str, version: str, image: str | None = None
) -> Package:
    """Import the modules of `path`, compile what they define, stamp project/domain/version
    into every template and bundle the source tree. `image` is the container image of every
    task that names none itself (`@task(container_image=...)`).

    Raises DiscoveryError (not found, import failure, objects defined inside functions),
    CompilationError (a workflow fails to compile) or PackageError (names).
    """
    check_scope(project, domain, version)
    if image:
        try:
            check_image(image)
        except ValueError as exc:
            raise PackageError(f"--image: {exc}") from None
    tree = source_tree(path)
    bundle = create_bundle(tree.root, tree.include)
    paths = relative_path(tree.root)
    entities: dict[tuple[str, str], Entity] = {}

    def add(entity: Entity, what: str) -> None:
        key = (entity.kind, entity.name)
        known = entities.get(key)
        if known is not None and known.template != entity.template:
            raise DiscoveryError(
                f"two different {what}s are named '{entity.name}' under {path}: give one of "
                "them another name"
            )
        entities.setdefault(key, entity)

    with isolated_imports(tree):
        found = find_objects(import_modules(tree))
        workflows = list(found.workflows)
        for lp in found.launch_plans:
            if all(lp.workflow is not wf for wf in workflows):
                workflows.append(lp.workflow)
        workflow_ids = {}
        for wf in workflows:
            compiled = stamp_workflow(wf.compile(), project, domain, version, paths, image or "")
            workflow_ids[id(wf)] = compiled.primary.id
            add(
                Entity(WORKFLOW, wf.name, _serialize(compiled), _code_of(wf, wf.function, tree)),
                "workflow",
            )
            task_defs = wf.tasks
            for template in compiled.tasks:
                td = task_defs.get(template.id.name)
                fn = getattr(td, "function", None)
                code = _code_of(td, fn, tree) if fn is not None else {}
                add(Entity(TASK, template.id.name, _serialize(template), code), "task")
        for td in found.tasks:
            template = stamp_task(td.template(), project, domain, version, paths, image or "")
            add(
                Entity(TASK, td.name, _serialize(template), _code_of(td, td.function, tree)), "task"
            )
        for lp in found.launch_plans:
            spec = stamp_launch_plan(
                lp.spec(workflow_ids[id(lp.workflow)]), project, domain, version
            )
            add(
                Entity(LAUNCH_PLAN, lp.name, _serialize(spec), _code_of(lp, None, tree)),
                "launch plan",
            )
    if not entities:
        raise DiscoveryError(
            f"no tasks, workflows or launch plans are defined under {path} "
            f"(imported: {', '.join(tree.modules)})"
        )
    order = {k: i for i, k in enumerate(KINDS)}
    ordered = sorted(entities.values(), key=lambda e: (order[e.kind], e.name))
    return Package(project, domain, version, bundle, tuple(ordered), tree.skipped)
