"""The registry: immutable tasks, workflows and launch plans by project/domain/name/version."""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from taskfabric.bundles import upload_bundle
from taskfabric.core.v1 import launch_plan_pb2, tasks_pb2, types_pb2, workflow_pb2
from taskfabric.errors import TaskfabricError
from taskfabric.logs import get_logger
from taskfabric.metadata import MetadataStore
from taskfabric.metadata._schema import executions
from taskfabric.metadata._store import reads
from taskfabric.registry._diff import bundle_diff, entity_diff
from taskfabric.registry._launch import (
    LaunchError,
    LaunchRequest,
    complete_inputs,
    new_execution_name,
)
from taskfabric.registry._package import (
    LAUNCH_PLAN,
    TASK,
    WORKFLOW,
    Entity,
    Package,
    build_package,
    parse_template,
)
from taskfabric.registry._schema import code_bundles, launch_plan_states, registry_entities
from taskfabric.storage import BlobStore

log = get_logger("taskfabric.registry")

_KIND_ALIASES = {
    "task": TASK,
    "tasks": TASK,
    "workflow": WORKFLOW,
    "workflows": WORKFLOW,
    "launch_plan": LAUNCH_PLAN,
    "launch_plans": LAUNCH_PLAN,
    "launchplan": LAUNCH_PLAN,
    "launchplans": LAUNCH_PLAN,
    "launch-plan": LAUNCH_PLAN,
    "launch-plans": LAUNCH_PLAN,
}
_ACTIVE_PHASES = ("QUEUED", "RUNNING")


class EntityNotFoundError(TaskfabricError, LookupError):
    """No registered entity (or active launch plan) has the given id."""


@dataclass(frozen=True)
class EntityConflict:
    """A registered entity whose new content differs: `diff` shows the template and code
    location changes, and is empty when only the code bundle differs."""

    kind: str
    name: str
    diff: str


class RegistrationConflict(TaskfabricError):
    """Registering an id that exists with different content; nothing was recorded."""

    def __init__(
        self,
        project: str,
        domain: str,
        version: str,
        conflicts: list[EntityConflict],
        bundle_diff: str = "",
    ) -> None:
        self.conflicts = conflicts
        self.bundle_diff = bundle_diff
        count = len(conflicts)
        lines = [
            f"version {version} of {project}/{domain} is already registered with different "
            f"content ({count} {'entity differs' if count == 1 else 'entities differ'}); "
            "registered versions are immutable: register the changes under a new version.",
        ]
        for c in conflicts:
            if c.diff:
                lines.append(f"\n{c.kind.replace('_', ' ')} {c.name}:\n{c.diff.rstrip()}")
        same = [f"{c.kind.replace('_', ' ')} {c.name}" for c in conflicts if not c.diff]
        if same:
            lines.append(f"\nsame template, different code bundle: {', '.join(same)}")
        if bundle_diff:
            lines.append(f"\n{bundle_diff.rstrip()}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class RegisteredEntity:
    kind: str
    project: str
    domain: str
    name: str
    version: str
    #: "registered" (new) or "unchanged" (the same content was registered before).
    status: str
    digest: str


@dataclass(frozen=True)
class RegistrationResult:
    project: str
    domain: str
    version: str
    bundle_uri: str
    bundle_digest: str
    entities: tuple[RegisteredEntity, ...]
    skipped: tuple[str, ...] = ()

    @property
    def unchanged(self) -> bool:
        """True when everything was registered before with the same content (a no-op)."""
        return all(e.status == "unchanged" for e in self.entities)


@dataclass(frozen=True)
class EntityInfo:
    kind: str
    project: str
    domain: str
    name: str
    version: str
    digest: str
    created_at: float
    code: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ActiveLaunchPlan:
    """The active version of a launch plan name and the scheduler's progress on it."""

    project: str
    domain: str
    name: str
    version: str
    #: When this version was activated: a fixed rate counts from here.
    activated_at: float
    #: The newest schedule slot handled (launched, skipped or left out by catch-up).
    last_slot: float


def normalize_kind(kind: str) -> str:
    try:
        return _KIND_ALIASES[kind.lower()]
    except KeyError:
        raise TaskfabricError(
            f"unknown entity kind '{kind}': use task, workflow or launch_plan"
        ) from None


class _Conflicts(Exception):
    def __init__(self, found: list[tuple[Entity, Any]]) -> None:
        self.found = found


class Registry:
    """Registered entities in the metadata database, their templates and code bundles in the
    blob store. Thread-safe; works on SQLite and PostgreSQL (`MetadataStore` creates the tables
    with its migrations)."""

    def __init__(
        self,
        metadata: MetadataStore,
        store: BlobStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.metadata = metadata
        self.store = store
        self.engine = metadata.engine
        self._clock = clock
        self._dialect = self.engine.dialect.name
        self._lock = threading.Lock()
        self._templates: OrderedDict[str, bytes] = OrderedDict()
        self._bundle_uris: dict[str, str] = {}  # digest -> URI; bundles never change
        # (kind, project, domain, name, version) -> its row: a version, once registered,
        # never changes (registering it again with other content is refused), so a launch
        # of a given version reads its row once per process, not at each launch
        self._rows: OrderedDict[tuple[str, str, str, str, str], Any] = OrderedDict()
        self._rows_lock = threading.Lock()  # not `_lock`: held through registrations

    # -- statements -------------------------------------------------------------------

    def _insert(self, table: sa.Table) -> Any:
        if self._dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert
        elif self._dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert  # type: ignore[assignment]
        else:
            raise NotImplementedError(
                f"the registry supports SQLite and PostgreSQL, not {self._dialect}"
            )
        return insert(table)

    def _template(self, uri: str) -> bytes:
        with self._lock:
            data = self._templates.get(uri)
            if data is not None:
                self._templates.move_to_end(uri)
                return data
        data = self.store.get_bytes(uri)
        with self._lock:
            self._templates[uri] = data
            while len(self._templates) > 512:
                self._templates.popitem(last=False)
        return data

    # -- registering ------------------------------------------------------------------

    def register(
        self, path: Path, *, project: str, domain: str, version: str, image: str | None = None
    ) -> RegistrationResult:
        """Import, compile and record everything defined under `path` (a folder of .py files,
        a package or a file) as version `version` of `project`/`domain`.

        Identical content registered again is a no-op (every entity "unchanged"); an existing
        id with different content raises RegistrationConflict with a diff, and records nothing.
        `image`: the container image of the tasks that name none themselves.
        """
        return self.record(
            build_package(path, project=project, domain=domain, version=version, image=image)
        )

    def record(self, package: Package) -> RegistrationResult:
        """Store a package built by `build_package` (here or by a remote client). Runs no user
        code: safe on a server."""
        package.check()
        p, d, v = package.project, package.domain, package.version
        bundle_uri = upload_bundle(self.store, package.bundle.data)
        now = self._clock()
        rows = []
        for e in package.entities:
            uri = self.store.uri("registry", p, d, f"{e.kind}s", f"{e.digest}.pb")
            if not self.store.exists(uri):
                self.store.put_bytes(uri, e.template)
            rows.append(
                {
                    "kind": e.kind,
                    "project": p,
                    "domain": d,
                    "name": e.name,
                    "version": v,
                    "digest": e.digest,
                    "template_uri": uri,
                    "bundle_digest": package.bundle.digest
                    if e.code.get("root") is not None
                    else "",
                    "code": json.dumps(dict(e.code), sort_keys=True),
                    "created_at": now,
                }
            )
        try:
            statuses = self._insert_entities(package, bundle_uri, rows, now)
        except _Conflicts as exc:
            raise self._conflict_error(package, exc.found) from None
        result = RegistrationResult(
            p,
            d,
            v,
            bundle_uri,
            package.bundle.digest,
            tuple(
                RegisteredEntity(e.kind, p, d, e.name, v, status, e.digest)
                for e, status in zip(package.entities, statuses, strict=True)
            ),
            package.skipped,
        )
        log.info(
            "registered",
            project=p,
            domain=d,
            version=v,
            new=sum(1 for e in result.entities if e.status == "registered"),
            unchanged=sum(1 for e in result.entities if e.status == "unchanged"),
        )
        return result

    def _insert_entities(
        self, package: Package, bundle_uri: str, rows: list[dict[str, Any]], now: float
    ) -> list[str]:
        t = registry_entities
        statuses: list[str] = []
        conflicts: list[tuple[Entity, Any]] = []
        with self._lock, self.engine.begin() as conn:
            conn.execute(
                self._insert(code_bundles).on_conflict_do_nothing(),
                {
                    "digest": package.bundle.digest,
                    "uri": bundle_uri,
                    "size": package.bundle.size,
                    "created_at": now,
                },
            )
            # RETURNING tells inserted from ignored rows (rowcount does not, on psycopg).
            insert = self._insert(t).on_conflict_do_nothing().returning(t.c.kind)
            for entity, row in zip(package.entities, rows, strict=True):
                if conn.execute(insert, row).first() is not None:
                    statuses.append("registered")
                    continue
                existing = conn.execute(
                    sa.select(t).where(
                        *(
                            t.c[k] == row[k]
                            for k in ("kind", "project", "domain", "name", "version")
                        )
                    )
                ).one()
                same = (
                    existing.digest == row["digest"]
                    and existing.bundle_digest == row["bundle_digest"]
                    and json.loads(existing.code) == json.loads(row["code"])
                )
                if same:
                    statuses.append("unchanged")
                else:
                    conflicts.append((entity, existing))
            if conflicts:
                raise _Conflicts(conflicts)  # rolls the transaction back
        return statuses

    def _conflict_error(
        self, package: Package, found: list[tuple[Entity, Any]]
    ) -> RegistrationConflict:
        conflicts = []
        old_bundles = set()
        for entity, row in found:
            old = parse_template(entity.kind, self._template(row.template_uri))
            text = entity_diff(
                entity.kind,
                entity.name,
                old,
                entity.message(),
                json.loads(row.code),
                dict(entity.code),
            )
            if row.bundle_digest and row.bundle_digest != package.bundle.digest:
                old_bundles.add(row.bundle_digest)
            conflicts.append(EntityConflict(entity.kind, entity.name, text))
        bundle_text = ""
        for digest in sorted(old_bundles):
            bundle_text += bundle_diff(self._bundle_bytes(digest), digest, package.bundle)
        return RegistrationConflict(
            package.project, package.domain, package.version, conflicts, bundle_text
        )

    def _bundle_bytes(self, digest: str) -> bytes | None:
        with self.engine.connect() as conn:
            uri = conn.execute(
                sa.select(code_bundles.c.uri).where(code_bundles.c.digest == digest)
            ).scalar()
        if uri is None:
            return None
        try:
            return self.store.get_bytes(uri)
        except FileNotFoundError:
            return None

    # -- reading ----------------------------------------------------------------------

    def _select_row(
        self, kind: str, project: str, domain: str, name: str, version: str | None
    ) -> Any:
        key = (kind, project, domain, name, version) if version is not None else None
        if key is not None:
            with self._rows_lock:
                found = self._rows.get(key)
                if found is not None:
                    self._rows.move_to_end(key)
                    return found
        t = registry_entities
        q = sa.select(t).where(
            t.c.kind == kind, t.c.project == project, t.c.domain == domain, t.c.name == name
        )
        if version is not None:
            q = q.where(t.c.version == version)
        q = q.order_by(t.c.created_at.desc(), t.c.version.desc()).limit(1)
        with reads(self.engine).connect() as conn:
            row = conn.execute(q).first()
        if row is None:
            raise self._not_found(kind, project, domain, name, version)
        if key is not None:
            with self._rows_lock:
                self._rows[key] = row
                while len(self._rows) > 512:
                    self._rows.popitem(last=False)
        return row

    def _not_found(
        self, kind: str, project: str, domain: str, name: str, version: str | None
    ) -> EntityNotFoundError:
        what = kind.replace("_", " ")
        known = self.versions(kind, project, domain, name)
        if known:
            return EntityNotFoundError(
                f"{what} '{name}' in {project}/{domain} has no version '{version}'; "
                f"registered versions: {', '.join(known[:10])}"
            )
        names = [e.name for e in self.list_entities(kind, project, domain)]
        similar = sorted({n for n in names if n.endswith(name) or name in n})[:5]
        hint = f"; did you mean {', '.join(similar)}?" if similar else ""
        return EntityNotFoundError(
            f"no {what} '{name}' is registered in {project}/{domain}{hint} "
            "(`taskfabric entities list` shows what is)"
        )

    def _code(self, row: Any) -> dict[str, str]:
        code: dict[str, str] = json.loads(row.code)
        if "root" in code and row.bundle_digest:
            uri = self._bundle_uris.get(row.bundle_digest)
            if uri is None:
                with self.engine.connect() as conn:
                    uri = conn.execute(
                        sa.select(code_bundles.c.uri).where(
                            code_bundles.c.digest == row.bundle_digest
                        )
                    ).scalar()
                if uri is not None:
                    self._bundle_uris[row.bundle_digest] = uri
            if uri is not None:
                code = {"bundle": uri, **code}
        return code

    def get_task(
        self, project: str, domain: str, name: str, version: str | None = None
    ) -> tasks_pb2.TaskTemplate:
        """A task template; `version=None` means the latest registered."""
        row = self._select_row(TASK, project, domain, name, version)
        template: tasks_pb2.TaskTemplate = parse_template(TASK, self._template(row.template_uri))
        return template

    def get_workflow(
        self, project: str, domain: str, name: str, version: str | None = None
    ) -> tuple[workflow_pb2.CompiledWorkflow, dict[str, str]]:
        """The compiled workflow and its code location (`{"bundle", "root", "module",
        "object"}`); `version=None` means the latest registered."""
        row = self._select_row(WORKFLOW, project, domain, name, version)
        compiled: workflow_pb2.CompiledWorkflow = parse_template(
            WORKFLOW, self._template(row.template_uri)
        )
        return compiled, self._code(row)

    def get_launch_plan(
        self, project: str, domain: str, name: str, version: str | None = None
    ) -> launch_plan_pb2.LaunchPlanSpec:
        """A launch plan; `version=None` means the active version, else the latest."""
        if version is None:
            version = self.active_version(project, domain, name)
        row = self._select_row(LAUNCH_PLAN, project, domain, name, version)
        spec: launch_plan_pb2.LaunchPlanSpec = parse_template(
            LAUNCH_PLAN, self._template(row.template_uri)
        )
        return spec

    def list_entities(
        self, kind: str, project: str, domain: str, name: str | None = None
    ) -> list[EntityInfo]:
        """Registered entities of `kind` in project/domain: by name, newest version first."""
        kind = normalize_kind(kind)
        t = registry_entities
        q = sa.select(t).where(t.c.kind == kind, t.c.project == project, t.c.domain == domain)
        if name is not None:
            q = q.where(t.c.name == name)
        q = q.order_by(t.c.name, t.c.created_at.desc(), t.c.version.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            EntityInfo(
                r.kind,
                r.project,
                r.domain,
                r.name,
                r.version,
                r.digest,
                r.created_at,
                self._code(r),
            )
            for r in rows
        ]

    def versions(self, kind: str, project: str, domain: str, name: str) -> list[str]:
        """The registered versions of one entity, newest first."""
        kind = normalize_kind(kind)
        t = registry_entities
        q = (
            sa.select(t.c.version)
            .where(t.c.kind == kind, t.c.project == project, t.c.domain == domain, t.c.name == name)
            .order_by(t.c.created_at.desc(), t.c.version.desc())
        )
        with self.engine.connect() as conn:
            return [r[0] for r in conn.execute(q).all()]

    # -- launch plans -----------------------------------------------------------------

    def activate(
        self, project: str, domain: str, name: str, version: str, *, now: float | None = None
    ) -> ActiveLaunchPlan:
        """Make `version` the active version of launch plan `name` (one per name): the
        schedule of this version replaces the previous one's from now on. Activating the
        active version again changes nothing."""
        self._select_row(LAUNCH_PLAN, project, domain, name, version)  # must exist
        now = self._clock() if now is None else now
        t = launch_plan_states
        base = self._insert(t).values(
            project=project,
            domain=domain,
            name=name,
            version=version,
            activated_at=now,
            last_slot=now,
            updated_at=now,
        )
        stmt = base.on_conflict_do_update(
            index_elements=["project", "domain", "name"],
            set_={
                "version": base.excluded.version,
                "activated_at": base.excluded.activated_at,
                "last_slot": base.excluded.last_slot,
                "updated_at": base.excluded.updated_at,
            },
            where=t.c.version != base.excluded.version,
        )
        with self._lock, self.engine.begin() as conn:
            conn.execute(stmt)
            state = self._state(conn, project, domain, name)
        assert state is not None
        log.info(
            "launch plan activated", project=project, domain=domain, name=name, version=version
        )
        return state

    def deactivate(self, project: str, domain: str, name: str, version: str | None = None) -> bool:
        """Deactivate launch plan `name` (only if `version` is the active one, when given);
        False when it was not active."""
        t = launch_plan_states
        cond = [t.c.project == project, t.c.domain == domain, t.c.name == name]
        if version is not None:
            cond.append(t.c.version == version)
        with self._lock, self.engine.begin() as conn:
            done = bool(conn.execute(t.delete().where(*cond)).rowcount)
        if done:
            log.info("launch plan deactivated", project=project, domain=domain, name=name)
        return done

    @staticmethod
    def _state(conn: Connection, project: str, domain: str, name: str) -> ActiveLaunchPlan | None:
        t = launch_plan_states
        row = conn.execute(
            sa.select(t).where(t.c.project == project, t.c.domain == domain, t.c.name == name)
        ).first()
        if row is None:
            return None
        return ActiveLaunchPlan(
            row.project, row.domain, row.name, row.version, row.activated_at, row.last_slot
        )

    def active_version(self, project: str, domain: str, name: str) -> str | None:
        with self.engine.connect() as conn:
            state = self._state(conn, project, domain, name)
        return None if state is None else state.version

    def active_launch_plans(
        self, project: str | None = None, domain: str | None = None
    ) -> list[ActiveLaunchPlan]:
        t = launch_plan_states
        q = sa.select(t).order_by(t.c.project, t.c.domain, t.c.name)
        if project is not None:
            q = q.where(t.c.project == project)
        if domain is not None:
            q = q.where(t.c.domain == domain)
        with self.engine.connect() as conn:
            rows = conn.execute(q).all()
        return [
            ActiveLaunchPlan(r.project, r.domain, r.name, r.version, r.activated_at, r.last_slot)
            for r in rows
        ]

    def record_slot(self, state: ActiveLaunchPlan, slot: float) -> bool:
        """Record that the scheduler handled `slot` of `state`'s activation. Ignored (False)
        if the plan was deactivated or activated again since, or a newer slot is recorded."""
        t = launch_plan_states
        with self._lock, self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(
                    t.c.project == state.project,
                    t.c.domain == state.domain,
                    t.c.name == state.name,
                    t.c.version == state.version,
                    t.c.activated_at == state.activated_at,
                    t.c.last_slot < slot,
                )
                .values(last_slot=slot, updated_at=self._clock())
            )
        return bool(result.rowcount)

    def plan_is_running(self, project: str, domain: str, name: str, *, besides: str = "") -> bool:
        """Whether an execution of launch plan `name` (any version), other than the one named
        `besides`, is QUEUED or RUNNING."""
        t = executions
        q = (
            sa.select(t.c.id)
            .where(
                t.c.project == project,
                t.c.domain == domain,
                t.c.launch_plan.startswith(f"{name}:", autoescape=True),
                t.c.phase.in_(_ACTIVE_PHASES),
                t.c.name != besides,
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(q).first() is not None

    # -- launching --------------------------------------------------------------------

    def prepare_launch(
        self,
        project: str,
        domain: str,
        name: str,
        *,
        version: str | None = None,
        inputs: types_pb2.LiteralMap | Mapping[str, types_pb2.Literal] | None = None,
        execution_name: str | None = None,
        scheduled_at: float | None = None,
        cluster: str | None = None,
    ) -> LaunchRequest:
        """A launch of launch plan `name` (the active version unless `version`): its default
        inputs, then `inputs`, then its fixed inputs (which `inputs` may not set), over the
        workflow's own defaults. The cluster label is `cluster`, else the plan's."""
        spec = self.get_launch_plan(project, domain, name, version)
        compiled, code = self.get_workflow(
            project, domain, spec.workflow_id.name, spec.workflow_id.version
        )
        given = dict(inputs.literals if isinstance(inputs, types_pb2.LiteralMap) else inputs or {})
        what = f"launch plan '{name}' version {spec.id.version}"
        fixed = sorted(set(given) & set(spec.fixed_inputs.literals))
        if fixed:
            raise LaunchError(
                f"{what}: input {', '.join(fixed)} is fixed by the launch plan and cannot be "
                "set at launch; use another launch plan or launch the workflow itself",
                inputs=fixed,
            )
        merged = complete_inputs(
            compiled,
            [
                ("default input", spec.default_inputs.literals),
                ("input", given),
                ("fixed input", spec.fixed_inputs.literals),
            ],
            what=what,
        )
        return LaunchRequest(
            project=project,
            domain=domain,
            name=execution_name or new_execution_name(),
            workflow=compiled,
            inputs=merged,
            code=code,
            launch_plan=f"{name}:{spec.id.version}",
            scheduled_at=scheduled_at,
            cluster=cluster or spec.cluster,
        )

    def prepare_workflow_launch(
        self,
        project: str,
        domain: str,
        workflow: str,
        *,
        version: str | None = None,
        inputs: types_pb2.LiteralMap | Mapping[str, types_pb2.Literal] | None = None,
        execution_name: str | None = None,
    ) -> LaunchRequest:
        """A launch of a registered workflow (the latest version unless `version`) with
        `inputs` over its own defaults."""
        compiled, code = self.get_workflow(project, domain, workflow, version)
        given = dict(inputs.literals if isinstance(inputs, types_pb2.LiteralMap) else inputs or {})
        merged = complete_inputs(
            compiled,
            [("input", given)],
            what=f"workflow '{workflow}' version {compiled.primary.id.version}",
        )
        return LaunchRequest(
            project=project,
            domain=domain,
            name=execution_name or new_execution_name(),
            workflow=compiled,
            inputs=merged,
            code=code,
        )


def registry_for(config: Any) -> Registry:
    """A Registry on a config's metadata database and blob store (as the engine opens them)."""
    from taskfabric.plugins import open_blob_store

    return Registry(MetadataStore(config.metadata_url), open_blob_store(config))
