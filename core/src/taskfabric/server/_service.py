"""The control plane: every API operation, with its permission checks, independent of HTTP.

A token sees only its own projects: anything in another project is "not found" (404), the
same answer as for something that does not exist, so a token learns nothing about projects
it cannot see. Inside its projects, an operation its role does not allow is "forbidden" (403).
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import IO, Any

from taskfabric.config import Config
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.errors import TaskfabricError
from taskfabric.metadata import ExecutionRecord
from taskfabric.registry import (
    EntityNotFoundError,
    Launcher,
    LaunchError,
    LaunchRequest,
    PackageError,
    RegistrationConflict,
    Registry,
    describe_schedule,
    enqueue_launcher,
    next_slot,
    normalize_kind,
)
from taskfabric.registry import Package as _Package
from taskfabric.server import _models as m
from taskfabric.server import _queries as q
from taskfabric.server import _views as views
from taskfabric.server._auth import (
    ALL_PROJECTS,
    ANONYMOUS_ADMIN,
    Principal,
    Role,
    TokenError,
    TokenStore,
)
from taskfabric.server._inputs import InputError, interface_inputs, values_json
from taskfabric.server._limits import LimitError, check_input_size, check_input_values
from taskfabric.server._uploads import Resolver, UploadError, UploadTooLarge, stage
from taskfabric.tasklogs import LogNotFoundError


class ApiError(TaskfabricError):
    """An error with the HTTP status it answers."""

    status = 400

    def __init__(
        self, message: str, *, input: str | None = None, inputs: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        #: The input at fault (the first of `inputs`, when several are).
        self.input = input or (inputs[0] if inputs else None)
        self.inputs = list(inputs)


class Unauthorized(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class Conflict(ApiError):
    status = 409


class Invalid(ApiError):
    status = 422


class TooLarge(ApiError):
    """Over a `[server]` limit; the message names the limit and the setting."""

    status = 413


def _no_project(project: str) -> NotFound:
    return NotFound(f"no project '{project}' (or this token cannot see it)")


class ControlPlane:
    """The server's state: one engine (database, blob store), the registry and the tokens."""

    def __init__(self, config: Config, *, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or Engine(config)
        self.engine.value_limit = config.server.max_value_bytes
        self.metadata = self.engine.metadata
        self.registry = Registry(self.metadata, self.engine.store)
        self.tokens = TokenStore(self.metadata)
        self.auth = config.server.auth

    def close(self) -> None:
        self.engine.close()

    def launcher(self) -> Launcher:
        """How the scheduler launches: `Engine.enqueue` under the slot's deterministic name."""
        return enqueue_launcher(self.engine)

    # -- who --------------------------------------------------------------------------

    def authenticate(self, token: str | None) -> Principal:
        if not self.auth:
            return ANONYMOUS_ADMIN
        if not token:
            raise Unauthorized(
                "this server needs an API token: send 'Authorization: Bearer <token>' (the "
                "command line reads $TASKFABRIC_TOKEN or [server] token_file); an admin "
                "creates one with `taskfabric tokens create`"
            )
        who = self.tokens.check(token)
        if isinstance(who, str):
            raise Unauthorized(f"{who}; ask an admin for a new one")
        return who

    @staticmethod
    def _see(who: Principal, project: str) -> None:
        if not who.sees(project):
            raise _no_project(project)

    def _need(self, who: Principal, role: Role, project: str, action: str) -> None:
        self._see(who, project)
        if not who.role.allows(role):
            raise Forbidden(
                f"{action} needs the {role.value} role in project '{project}'; this token is "
                f"a {who.role.value}"
            )

    @staticmethod
    def _scope(who: Principal) -> frozenset[str] | None:
        return None if who.every_project else who.projects

    def whoami(self, who: Principal) -> m.WhoAmI:
        return m.WhoAmI(
            token_id=who.token_id,
            name=who.name,
            role=who.role,
            projects=sorted(who.projects),
            auth=self.auth,
        )

    # -- projects ---------------------------------------------------------------------

    def projects(self, who: Principal) -> list[m.ProjectInfo]:
        found: dict[str, set[str]] = {}
        default = self.config.project
        found.setdefault(default.name, set()).add(default.domain)
        for name in [*self.config.projects, *who.projects]:
            if name != ALL_PROJECTS:
                found.setdefault(name, set())
        for project, domain in q.scopes(self.metadata.engine):
            found.setdefault(project, set()).add(domain)
        return [
            m.ProjectInfo(name=p, domains=sorted(d))
            for p, d in sorted(found.items())
            if who.sees(p)
        ]

    def domains(self, who: Principal, project: str) -> list[str]:
        self._see(who, project)
        for info in self.projects(who):
            if info.name == project:
                return info.domains
        raise _no_project(project)

    # -- registry ---------------------------------------------------------------------

    def register(self, who: Principal, project: str, domain: str, data: bytes) -> m.Registration:
        """Record a package built by a client (`Package.to_bytes`): the server runs no user
        code, and stays the only writer of its database and blob store."""
        self._need(who, Role.ADMIN, project, "registering")
        try:
            package = _Package.from_bytes(data)
        except PackageError as exc:
            raise Invalid(str(exc)) from None
        if (package.project, package.domain) != (project, domain):
            raise Invalid(
                f"the package is for {package.project}/{package.domain}, but was sent to "
                f"{project}/{domain}"
            )
        try:
            result = self.registry.record(package)
        except RegistrationConflict as exc:
            raise Conflict(str(exc)) from None
        except PackageError as exc:
            raise Invalid(str(exc)) from None
        return m.Registration(
            project=result.project,
            domain=result.domain,
            version=result.version,
            bundle_digest=result.bundle_digest,
            entities=[
                m.RegisteredEntity(
                    kind=e.kind, name=e.name, version=e.version, status=e.status, digest=e.digest
                )
                for e in result.entities
            ],
            unchanged=result.unchanged,
            skipped=list(result.skipped),
        )

    def entities(
        self, who: Principal, project: str, domain: str, kind: str, name: str | None = None
    ) -> list[m.Entity]:
        self._see(who, project)
        try:
            kind = normalize_kind(kind)
        except TaskfabricError as exc:
            raise Invalid(str(exc)) from None
        return [
            m.Entity(
                kind=e.kind,
                project=e.project,
                domain=e.domain,
                name=e.name,
                version=e.version,
                digest=e.digest,
                created_at=e.created_at,
            )
            for e in self.registry.list_entities(kind, project, domain, name)
        ]

    def workflow(
        self, who: Principal, project: str, domain: str, name: str, version: str | None
    ) -> m.WorkflowDetail:
        self._see(who, project)
        try:
            compiled, _ = self.registry.get_workflow(project, domain, name, version)
        except EntityNotFoundError as exc:
            raise NotFound(str(exc)) from None
        found = compiled.primary.id.version
        infos = self.registry.list_entities("workflow", project, domain, name)
        info = next(i for i in infos if i.version == found)
        inputs, outputs = views.parameters(compiled.primary.interface)
        return m.WorkflowDetail(
            kind=info.kind,
            project=project,
            domain=domain,
            name=name,
            version=found,
            digest=info.digest,
            created_at=info.created_at,
            inputs=inputs,
            outputs=outputs,
            tasks=[t.id.name for t in compiled.tasks],
            images={t.id.name: t.container_image for t in compiled.tasks if t.container_image},
            versions=[i.version for i in infos],
        )

    # -- launching --------------------------------------------------------------------

    def launch(
        self, who: Principal, project: str, domain: str, body: m.LaunchRequest
    ) -> m.Launched:
        """Launch with JSON inputs, converted by the interface's types; files, directories
        and dataframes are `{"upload": ref}` of uploads made in this project and domain."""
        uploads = Resolver(
            self.engine.store,
            project,
            domain,
            self.engine.work_root / "uploads" / secrets.token_hex(8),
        )

        def convert(interface: Any, what: str) -> dict[str, types_pb2.Literal]:
            literals = interface_inputs(interface, body.inputs, what=what, uploads=uploads)
            check_input_size(self.config, sum(lit.ByteSize() for lit in literals.values()))
            return literals

        try:
            check_input_values(self.config, body.inputs)
        except LimitError as exc:
            raise TooLarge(str(exc), input=exc.input or None) from None
        try:
            return self.launch_literals(
                who,
                project,
                domain,
                workflow=body.workflow,
                launch_plan=body.launch_plan,
                version=body.version,
                inputs=convert,
                name=body.name,
            )
        finally:
            uploads.close()

    def upload(
        self, who: Principal, project: str, domain: str, name: str, kind: str, body: IO[bytes]
    ) -> m.Upload:
        """Stage data for file, directory and dataframe inputs of later launches."""
        self._need(who, Role.LAUNCHER, project, "uploading launch inputs")
        work_dir = self.engine.work_root / "uploads" / secrets.token_hex(8)
        try:
            ref, digest, size = stage(
                self.engine.store,
                project,
                domain,
                name=name,
                kind=kind,
                body=body,
                work_dir=work_dir,
                max_bytes=self.config.server.max_upload_bytes,
            )
        except UploadTooLarge as exc:
            raise TooLarge(str(exc)) from None
        except UploadError as exc:
            raise Invalid(str(exc)) from None
        finally:
            shutil.rmtree(work_dir, ignore_errors=True)
        return m.Upload(ref=ref, kind=kind, name=name, sha256=digest, size=size)

    def launch_literals(
        self,
        who: Principal,
        project: str,
        domain: str,
        *,
        workflow: str | None,
        launch_plan: str | None,
        version: str | None,
        inputs: Callable[[Any, str], Mapping[str, types_pb2.Literal]],
        name: str | None,
    ) -> m.Launched:
        """Launch a registered workflow or launch plan; `inputs(interface, what)` gives the
        inputs as literals once the workflow's interface is known."""
        self._need(who, Role.LAUNCHER, project, "launching")
        if (workflow is None) == (launch_plan is None):
            raise Invalid("give either 'workflow' or 'launch_plan' (one of them)")
        try:
            if launch_plan is not None:
                spec = self.registry.get_launch_plan(project, domain, launch_plan, version)
                compiled, _ = self.registry.get_workflow(
                    project, domain, spec.workflow_id.name, spec.workflow_id.version
                )
                given = inputs(compiled.primary.interface, f"launch plan '{launch_plan}'")
                request = self.registry.prepare_launch(
                    project,
                    domain,
                    launch_plan,
                    version=spec.id.version,
                    inputs=given,
                    execution_name=name,
                )
            else:
                assert workflow is not None
                compiled, _ = self.registry.get_workflow(project, domain, workflow, version)
                given = inputs(compiled.primary.interface, f"workflow '{workflow}'")
                request = self.registry.prepare_workflow_launch(
                    project,
                    domain,
                    workflow,
                    version=compiled.primary.id.version,
                    inputs=given,
                    execution_name=name,
                )
        except EntityNotFoundError as exc:
            raise NotFound(str(exc)) from None
        except InputError as exc:
            raise Invalid(str(exc), input=exc.input or None) from None
        except LimitError as exc:
            raise TooLarge(str(exc), input=exc.input or None) from None
        except LaunchError as exc:
            raise Invalid(str(exc), inputs=exc.inputs) from None
        return self._enqueue(request)

    def _enqueue(self, request: LaunchRequest) -> m.Launched:
        """Insert-or-fetch by name in one step: of concurrent launches under one name exactly
        one makes the execution (201); the others replay it (200) when they asked for the
        same workflow version and inputs, and are refused (409) otherwise. (No read of the
        name first: a retry is rare, and pays for its documents written then deleted.)"""
        try:
            rec, created = self.engine.enqueue_or_fetch(
                request.workflow,
                request.inputs,
                project=request.project,
                domain=request.domain,
                name=request.name,
                code=request.code,
                **({"launch_plan": request.launch_plan} if request.launch_plan else {}),
                **({"scheduled_at": request.scheduled_at} if request.scheduled_at else {}),
            )
        except TaskfabricError as exc:
            raise Conflict(str(exc)) from None
        if not created:
            self._check_same(rec, request)
        return m.Launched(execution=views.execution(rec), created=created)

    def _check_same(self, existing: ExecutionRecord, request: LaunchRequest) -> None:
        """A launch under a taken name is a retry only if it asks for the same thing."""
        wf = request.workflow.primary.id
        inputs = self.engine.read_literals(existing.inputs_uri)
        same_inputs = inputs is not None and inputs.SerializeToString(
            deterministic=True
        ) == request.inputs.SerializeToString(deterministic=True)
        if (existing.workflow_name, existing.workflow_version) != (wf.name, wf.version) or (
            not same_inputs
        ):
            raise Conflict(
                f"execution name '{request.name}' is taken in {request.project}/"
                f"{request.domain} by execution {existing.id} of {existing.workflow_name} "
                f"version {existing.workflow_version} with other inputs; choose another name"
            )

    # -- executions -------------------------------------------------------------------

    def list_executions(
        self,
        who: Principal,
        *,
        project: str | None = None,
        domain: str | None = None,
        phases: Iterable[str] = (),
        workflow: str | None = None,
        launch_plan: str | None = None,
        limit: int = 50,
        offset: int = 0,
        before: str | None = None,
    ) -> list[m.Execution]:
        if project is not None and not who.sees(project):
            return []
        rows = q.list_executions(
            self.metadata.engine,
            projects=self._scope(who),
            project=project,
            domain=domain,
            phases=phases,
            workflow=workflow,
            launch_plan=launch_plan,
            limit=limit,
            offset=offset,
            before=before,
        )
        return [views.execution(r) for r in rows]

    def _execution(self, who: Principal, ref: str) -> ExecutionRecord:
        found = q.find_executions(self.metadata.engine, ref, projects=self._scope(who))
        if not found:
            raise NotFound(f"no execution '{ref}' (or this token cannot see it)")
        if len(found) > 1:
            raise Conflict(f"'{ref}' matches several executions: {', '.join(r.id for r in found)}")
        return found[0]

    def execution(
        self, who: Principal, ref: str, *, values: bool, events: bool, display: bool
    ) -> m.ExecutionDetail:
        rec = self._execution(who, ref)
        return views.execution_detail(
            self.engine, rec, values=values, events=events, display=display
        )

    def node_data(self, who: Principal, ref: str, node_id: str) -> m.NodeData:
        rec = self._execution(who, ref)
        node = self.metadata.node(rec.id, node_id)
        if node is None:
            raise NotFound(f"execution {rec.id} has no node '{node_id}' that started")
        return m.NodeData(
            inputs=values_json(self.engine.read_literals(node.inputs_uri)) or None,
            outputs=values_json(self.engine.read_literals(node.outputs_uri)) or None,
        )

    def task_log(
        self, who: Principal, ref: str, node_id: str, attempt: int | None, offset: int
    ) -> m.TaskLog:
        rec = self._execution(who, ref)
        try:
            return views.task_log(self.engine, rec, node_id, attempt, offset)
        except LogNotFoundError as exc:
            raise NotFound(str(exc)) from None

    def cancel(self, who: Principal, ref: str, reason: str) -> m.PhaseResult:
        rec = self._execution(who, ref)
        self._need(who, Role.LAUNCHER, rec.project, "cancelling")
        label = f" (token {who.name or who.token_id})" if who.token_id else ""
        phase = self.engine.request_cancel(rec.id, reason + label)
        return m.PhaseResult(id=rec.id, phase=phase)

    def relaunch(self, who: Principal, ref: str, name: str | None) -> m.Launched:
        """A new execution of the same workflow version with the same inputs."""
        rec = self._execution(who, ref)
        self._need(who, Role.LAUNCHER, rec.project, "relaunching")
        inputs = self.engine.read_literals(rec.inputs_uri)
        if inputs is None:
            raise Conflict(f"the inputs of execution {rec.id} cannot be read; launch anew")
        request = LaunchRequest(
            project=rec.project,
            domain=rec.domain,
            name=name or secrets.token_hex(6),
            workflow=self.engine.load_compiled(rec),
            inputs=inputs,
            code=dict(rec.code),
        )
        return self._enqueue(request)

    def recover(self, who: Principal, ref: str) -> m.Execution:
        """Put a failed or aborted execution back in the queue: a worker resumes it, and its
        succeeded nodes keep their outputs instead of running again."""
        rec = self._execution(who, ref)
        self._need(who, Role.LAUNCHER, rec.project, "recovering")
        if rec.phase not in q.RECOVERABLE:
            hint = "nothing to recover" if rec.phase == "SUCCEEDED" else "it has not ended"
            raise Conflict(f"execution {rec.id} is {rec.phase}: {hint}")
        label = who.name or who.token_id or "a user"
        if not q.requeue(
            self.metadata.engine, rec.id, now=time.time(), message=f"recover requested by {label}"
        ):
            raise Conflict(f"execution {rec.id} changed phase meanwhile; try again")
        found = self.metadata.get_execution(rec.id)
        assert found is not None
        return views.execution(found)

    # -- launch plans -----------------------------------------------------------------

    def launch_plans(self, who: Principal, project: str, domain: str) -> list[m.LaunchPlan]:
        self._see(who, project)
        names = dict.fromkeys(
            i.name for i in self.registry.list_entities("launch_plan", project, domain)
        )
        return [self._launch_plan(project, domain, name, None) for name in names]

    def launch_plan(
        self, who: Principal, project: str, domain: str, name: str, version: str | None
    ) -> m.LaunchPlan:
        """One launch plan, described by `version` (default: the active one, else the latest)."""
        self._see(who, project)
        return self._launch_plan(project, domain, name, version)

    def _launch_plan(
        self, project: str, domain: str, name: str, version: str | None
    ) -> m.LaunchPlan:
        versions = self.registry.versions("launch_plan", project, domain, name)
        if not versions:
            raise NotFound(f"no launch plan '{name}' is registered in {project}/{domain}")
        state = next(
            (s for s in self.registry.active_launch_plans(project, domain) if s.name == name),
            None,
        )
        if version is None:
            version = state.version if state is not None else versions[0]
        try:
            spec = self.registry.get_launch_plan(project, domain, name, version)
        except EntityNotFoundError as exc:
            raise NotFound(str(exc)) from None
        upcoming = None
        if state is not None and state.version == version and spec.HasField("schedule"):
            upcoming = next_slot(
                spec.schedule, anchor=state.activated_at, after=max(state.last_slot, time.time())
            )
        return m.LaunchPlan(
            project=project,
            domain=domain,
            name=name,
            version=version,
            versions=versions,
            active_version=state.version if state is not None else None,
            workflow=spec.workflow_id.name,
            workflow_version=spec.workflow_id.version,
            schedule=describe_schedule(spec.schedule),
            activated_at=state.activated_at if state is not None else None,
            last_slot=state.last_slot if state is not None else None,
            next_slot=upcoming,
        )

    def activate(
        self, who: Principal, project: str, domain: str, name: str, version: str
    ) -> m.Activation:
        self._need(who, Role.ADMIN, project, "activating a launch plan")
        before = self.registry.active_version(project, domain, name)
        try:
            state = self.registry.activate(project, domain, name, version)
        except EntityNotFoundError as exc:
            raise NotFound(str(exc)) from None
        return m.Activation(name=name, active_version=state.version, changed=before != version)

    def deactivate(self, who: Principal, project: str, domain: str, name: str) -> m.Activation:
        self._need(who, Role.ADMIN, project, "deactivating a launch plan")
        if not self.registry.versions("launch_plan", project, domain, name):
            raise NotFound(f"no launch plan '{name}' is registered in {project}/{domain}")
        changed = self.registry.deactivate(project, domain, name)
        return m.Activation(name=name, active_version=None, changed=changed)

    # -- tokens -----------------------------------------------------------------------

    def _admin_anywhere(self, who: Principal) -> None:
        if who.role is not Role.ADMIN:
            raise Forbidden(
                f"managing tokens needs the admin role; this token is a {who.role.value}"
            )

    def list_tokens(self, who: Principal) -> list[m.Token]:
        self._admin_anywhere(who)
        return [_token(t) for t in self.tokens.list() if who.covers(t.projects)]

    def create_token(self, who: Principal, body: m.TokenCreate) -> m.TokenCreated:
        """An admin creates tokens for its own projects only, with any role."""
        self._admin_anywhere(who)
        for project in body.projects:
            if not who.covers([project]):
                if project == "*":
                    raise Forbidden("only a token for every project ('*') can create one")
                raise _no_project(project)
        try:
            info, text = self.tokens.create(
                projects=body.projects,
                role=body.role,
                name=body.name,
                created_by=who.name or who.token_id,
                expires_in=body.expires_in,
            )
        except TokenError as exc:
            raise Invalid(str(exc)) from None
        return m.TokenCreated(token=text, info=_token(info))

    def revoke_token(self, who: Principal, token_id: str) -> m.Token:
        self._admin_anywhere(who)
        info = self.tokens.get(token_id)
        if info is None or not who.covers(info.projects):
            raise NotFound(f"no token '{token_id}'")
        self.tokens.revoke(token_id)
        found = self.tokens.get(token_id)
        assert found is not None
        return _token(found)


def _token(info: Any) -> m.Token:
    return m.Token(
        id=info.id,
        name=info.name,
        role=info.role,
        projects=list(info.projects),
        created_at=info.created_at,
        created_by=info.created_by,
        last_used_at=info.last_used_at,
        revoked_at=info.revoked_at,
        expires_at=info.expires_at,
        state=info.state,
    )


__all__ = [
    "ApiError",
    "Conflict",
    "ControlPlane",
    "Forbidden",
    "Invalid",
    "NotFound",
    "TooLarge",
    "Unauthorized",
]
