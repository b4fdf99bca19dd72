"""The HTTP API: FastAPI routes over the control plane, versioned under /api/v1.

Every route but /healthz needs a token (`Authorization: Bearer tf_...`) unless the server runs
with `[server] auth = false`. Errors are JSON `{"detail": "..."}` (see `Problem`).
"""

from __future__ import annotations

import tempfile
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from taskfabric._version import __version__
from taskfabric.config import Config
from taskfabric.errors import TaskfabricError, ValueTooLargeError
from taskfabric.logs import get_logger
from taskfabric.metadata import database_out_of_reach, out_of_connections_hint
from taskfabric.server import _models as m
from taskfabric.server._auth import Principal
from taskfabric.server._docs import add_docs
from taskfabric.server._limits import BodyLimit
from taskfabric.server._names import NAME_PATTERN, SCOPE_PATTERN, rule_message
from taskfabric.server._service import ApiError, ControlPlane, NotFound

API_PREFIX = "/api/v1"
log = get_logger("taskfabric.server")

_bearer = HTTPBearer(
    auto_error=False,
    description="An API token (`taskfabric tokens create --project P --role R`).",
)


def _plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


def _principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    return _plane(request).authenticate(credentials.credentials if credentials else None)


Plane = Annotated[ControlPlane, Depends(_plane)]
Who = Annotated[Principal, Depends(_principal)]
# Every project, domain, version and name a route takes follows one rule (`_names`).
ProjectPath = Annotated[str, Path(pattern=SCOPE_PATTERN, description="A project.")]
DomainPath = Annotated[str, Path(pattern=SCOPE_PATTERN, description="A domain of the project.")]
NamePath = Annotated[str, Path(pattern=NAME_PATTERN, description="A registered name.")]
RefPath = Annotated[
    str, Path(pattern=NAME_PATTERN, description="An execution id, name or unambiguous prefix.")
]

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.Problem, "description": "No token, or an unknown or revoked one."},
    403: {"model": m.Problem, "description": "The token's role does not allow this."},
    404: {"model": m.Problem, "description": "Not found, or in a project the token cannot see."},
    409: {"model": m.Problem, "description": "Conflicts with the current state."},
    413: {"model": m.Problem, "description": "Over a [server] limit: the detail names it."},
    422: {"model": m.Problem, "description": "Invalid request: the detail names what."},
}

api = APIRouter(prefix=API_PREFIX, responses=_ERRORS)
Scope = "/projects/{project}/domains/{domain}"


@api.get("/whoami", tags=["auth"], summary="The token making this request")
def whoami(plane: Plane, who: Who) -> m.WhoAmI:
    return plane.whoami(who)


# -- projects ---------------------------------------------------------------------------


@api.get("/projects", tags=["projects"], summary="Projects this token can see")
def projects(plane: Plane, who: Who) -> list[m.ProjectInfo]:
    return plane.projects(who)


@api.get("/projects/{project}/domains", tags=["projects"], summary="Domains of a project")
def domains(plane: Plane, who: Who, project: ProjectPath) -> list[str]:
    return plane.domains(who, project)


# -- registry ---------------------------------------------------------------------------


@api.post(
    Scope + "/registrations",
    tags=["registry"],
    status_code=201,
    summary="Register a package (admin)",
    description="The body is a registration package (`Package.to_bytes()`, an uncompressed "
    "tar of a manifest, the compiled templates and the code bundle) that `taskfabric "
    "register` builds where the code is. The server checks it and records it; it never "
    "imports registered code. Registering identical content again changes nothing "
    "(`unchanged`); a registered version with other content is a 409 with a diff.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/x-tar": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def register(
    request: Request, plane: Plane, who: Who, project: ProjectPath, domain: DomainPath
) -> m.Registration:
    data = await request.body()  # at most [server] max_package_bytes (`BodyLimit`)
    return await run_in_threadpool(plane.register, who, project, domain, data)


@api.get(Scope + "/entities", tags=["registry"], summary="Registered entities")
def entities(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    kind: Annotated[
        list[str],
        Query(
            description="task, workflow or launch_plan; repeated for several kinds at once "
            "(each kind's entities in the order asked)."
        ),
    ] = ["workflow"],  # noqa: B006 (FastAPI copies a query default)
    name: Annotated[
        str | None, Query(pattern=NAME_PATTERN, description="Only versions of this name.")
    ] = None,
) -> list[m.Entity]:
    """Every registered version, grouped by name, newest version first."""
    return [e for k in dict.fromkeys(kind) for e in plane.entities(who, project, domain, k, name)]


@api.get(
    Scope + "/entities/{kind}/{name}/versions",
    tags=["registry"],
    summary="Versions of one entity",
)
def versions(
    plane: Plane, who: Who, project: ProjectPath, domain: DomainPath, kind: str, name: NamePath
) -> list[m.Entity]:
    found = plane.entities(who, project, domain, kind, name)
    if not found:
        raise NotFound(f"no {kind.replace('_', ' ')} '{name}' is registered in {project}/{domain}")
    return found


@api.get(
    Scope + "/workflows/{name}",
    tags=["registry"],
    summary="A registered workflow and its interface",
)
def workflow(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    name: NamePath,
    version: Annotated[
        str | None, Query(pattern=SCOPE_PATTERN, description="Default: the latest.")
    ] = None,
) -> m.WorkflowDetail:
    return plane.workflow(who, project, domain, name, version)


# -- executions -------------------------------------------------------------------------


@api.post(
    Scope + "/uploads",
    tags=["executions"],
    status_code=201,
    summary="Upload data for a file, directory or dataframe input (launcher)",
    description="The body is the file's bytes (kind=file; a dataframe is a .csv or .parquet "
    "file) or a tar, plain or gzip, of a directory (kind=directory). Launch with "
    '`{"upload": ref}` as the input\'s value, in the same project and domain. Uploads are '
    "content-addressed: the same bytes give the same ref.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            },
        }
    },
)
async def upload(
    request: Request,
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    name: Annotated[
        str, Query(pattern=NAME_PATTERN, description="The file's name, e.g. orders.csv.")
    ],
    kind: Annotated[str, Query(description="file or directory")] = "file",
) -> m.Upload:
    # At most [server] max_upload_bytes are read (`BodyLimit`).
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:
        async for chunk in request.stream():
            body.write(chunk)
        body.seek(0)
        return await run_in_threadpool(plane.upload, who, project, domain, name, kind, body)


@api.post(
    Scope + "/executions",
    tags=["executions"],
    status_code=201,
    summary="Launch a workflow or launch plan (launcher)",
    responses={200: {"model": m.Launched, "description": "An execution of that name existed."}},
)
def launch(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    body: m.LaunchRequest,
    response: Response,
) -> m.Launched:
    launched = plane.launch(who, project, domain, body)
    if not launched.created:
        response.status_code = 200
    return launched


@api.get("/executions", tags=["executions"], summary="Executions, newest first")
def list_executions(
    plane: Plane,
    who: Who,
    project: Annotated[str | None, Query(pattern=SCOPE_PATTERN)] = None,
    domain: Annotated[str | None, Query(pattern=SCOPE_PATTERN)] = None,
    phase: Annotated[list[str] | None, Query(description="Only these phases.")] = None,
    workflow: Annotated[
        str | None, Query(max_length=255, description="Workflow name contains this.")
    ] = None,
    launch_plan: Annotated[str | None, Query(description="Launched by this plan.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    before: Annotated[
        str | None,
        Query(
            max_length=64,
            description="Only those listed after this execution id (the last of the page "
            "before): the next page, at the cost of the first however far it is.",
        ),
    ] = None,
) -> list[m.Execution]:
    return plane.list_executions(
        who,
        project=project,
        domain=domain,
        phases=phase or (),
        workflow=workflow,
        launch_plan=launch_plan,
        limit=limit,
        offset=offset,
        before=before,
    )


@api.get("/executions/{ref}", tags=["executions"], summary="One execution with its nodes")
def show_execution(
    plane: Plane,
    who: Who,
    ref: RefPath,
    values: Annotated[bool, Query(description="Outputs of succeeded nodes.")] = True,
    events: Annotated[bool, Query(description="Every phase transition.")] = False,
    display: Annotated[bool, Query(description="Values rendered for people.")] = False,
) -> m.ExecutionDetail:
    """`ref` is an execution id, a name, or an unambiguous prefix of either."""
    return plane.execution(who, ref, values=values, events=events, display=display)


@api.get(
    "/executions/{ref}/nodes/{node_id:path}/data",
    tags=["executions"],
    summary="A node's inputs and outputs",
)
def node_data(
    plane: Plane, who: Who, ref: RefPath, node_id: Annotated[str, Path(max_length=1024)]
) -> m.NodeData:
    return plane.node_data(who, ref, node_id)


@api.get(
    "/executions/{ref}/logs/{node_id:path}",
    tags=["executions"],
    summary="A task's log (stdout and stderr), one attempt",
    description="The log of one attempt of a task node (the latest unless `attempt` is "
    "given), from byte `offset` on, at most 256 KiB per call. While the attempt runs it is "
    "read from the live file on the engine's machine; once it ended, from the copy kept in "
    "the blob store (its last 1 MiB). To follow it, ask again with `offset=next_offset` "
    "until `complete` is true (polling about once a second). 404 when the node has no such "
    "attempt.",
)
def task_log(
    plane: Plane,
    who: Who,
    ref: RefPath,
    node_id: Annotated[str, Path(max_length=1024)],
    attempt: Annotated[int | None, Query(ge=1, description="Attempt number (1 = first).")] = None,
    offset: Annotated[int, Query(ge=0, description="Byte offset to read from.")] = 0,
) -> m.TaskLog:
    return plane.task_log(who, ref, node_id, attempt, offset)


@api.post("/executions/{ref}/cancel", tags=["executions"], summary="Cancel (launcher)")
def cancel(
    plane: Plane, who: Who, ref: RefPath, body: m.CancelRequest | None = None
) -> m.PhaseResult:
    """A queued execution is aborted at once; a running one by its engine within a second."""
    return plane.cancel(who, ref, (body or m.CancelRequest()).reason)


@api.post(
    "/executions/{ref}/relaunch",
    tags=["executions"],
    status_code=201,
    summary="Launch again with the same inputs (launcher)",
)
def relaunch(
    plane: Plane, who: Who, ref: RefPath, response: Response, body: m.RelaunchRequest | None = None
) -> m.Launched:
    launched = plane.relaunch(who, ref, (body or m.RelaunchRequest()).name)
    if not launched.created:
        response.status_code = 200
    return launched


@api.post(
    "/executions/{ref}/recover",
    tags=["executions"],
    summary="Resume a failed or aborted execution (launcher)",
)
def recover(plane: Plane, who: Who, ref: RefPath) -> m.Execution:
    """The execution goes back to QUEUED; a worker resumes it, re-using the outputs of its
    succeeded nodes (they do not run again)."""
    return plane.recover(who, ref)


# -- launch plans -----------------------------------------------------------------------


@api.get(Scope + "/launch_plans", tags=["launch plans"], summary="Launch plans")
def launch_plans(
    plane: Plane, who: Who, project: ProjectPath, domain: DomainPath
) -> list[m.LaunchPlan]:
    return plane.launch_plans(who, project, domain)


@api.get(Scope + "/launch_plans/{name}", tags=["launch plans"], summary="One launch plan")
def launch_plan(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    name: NamePath,
    version: Annotated[
        str | None,
        Query(pattern=SCOPE_PATTERN, description="Default: the active version, else the latest."),
    ] = None,
) -> m.LaunchPlan:
    return plane.launch_plan(who, project, domain, name, version)


@api.post(
    Scope + "/launch_plans/{name}/activate",
    tags=["launch plans"],
    summary="Activate a version (admin)",
)
def activate(
    plane: Plane,
    who: Who,
    project: ProjectPath,
    domain: DomainPath,
    name: NamePath,
    body: m.ActivateRequest,
) -> m.Activation:
    """One version of a plan is active at a time; its schedule replaces the previous one's."""
    return plane.activate(who, project, domain, name, body.version)


@api.post(
    Scope + "/launch_plans/{name}/deactivate",
    tags=["launch plans"],
    summary="Deactivate (admin)",
)
def deactivate(
    plane: Plane, who: Who, project: ProjectPath, domain: DomainPath, name: NamePath
) -> m.Activation:
    return plane.deactivate(who, project, domain, name)


# -- tokens -----------------------------------------------------------------------------


@api.get("/tokens", tags=["auth"], summary="Active tokens of this admin's projects")
def list_tokens(plane: Plane, who: Who) -> list[m.Token]:
    return plane.list_tokens(who)


@api.post("/tokens", tags=["auth"], status_code=201, summary="Create a token (admin)")
def create_token(plane: Plane, who: Who, body: m.TokenCreate) -> m.TokenCreated:
    """For the admin's own projects only. The token's text is in this response only."""
    return plane.create_token(who, body)


@api.delete("/tokens/{token_id}", tags=["auth"], summary="Revoke a token (admin)")
def revoke_token(
    plane: Plane, who: Who, token_id: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")]
) -> m.Token:
    return plane.revoke_token(who, token_id)


# -- the app ----------------------------------------------------------------------------


def _location(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def _message(error: dict[str, Any]) -> str:
    """A refused project, domain or name says the rule it breaks; other errors as pydantic says."""
    loc = error.get("loc") or ("",)
    if error.get("type") in ("string_pattern_mismatch", "string_too_long"):
        found = rule_message(str(loc[-1]), error.get("input"))
        if found is not None:
            return found
    return str(error.get("msg", ""))


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    body = m.Problem(detail=str(exc), input=exc.input, inputs=exc.inputs or None)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(body.model_dump(exclude_none=True), exc.status, headers=headers)


async def _taskfabric_error(request: Request, exc: Exception) -> JSONResponse:
    status = 413 if isinstance(exc, ValueTooLargeError) else 400
    return JSONResponse(m.Problem(detail=str(exc)).model_dump(exclude_none=True), status)


def _database_unavailable(exc: Exception) -> bool:
    """The database is out of reach for now (connections exhausted, a restart, SQLite's lock
    held too long), not a bug: PostgreSQL's OperationalErrors are about the connection, and
    SQLite's only when it is locked (a missing table is one too)."""
    if not database_out_of_reach(exc):
        return False
    if out_of_connections_hint(exc) is not None or getattr(exc, "connection_invalidated", False):
        return True
    cause = getattr(exc, "orig", None) or exc
    module = type(cause).__module__.split(".")[0]
    return module == "psycopg" or (module == "sqlite3" and "locked" in str(cause))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug or an outage behind a request: the log line carries the exception and its
    traceback, the client a JSON 500 that says where to look; or, when the database is out
    of reach for now (connections exhausted, a restart), a 503 that says why and to retry."""
    kind = f"{type(exc).__module__}.{type(exc).__qualname__}".removeprefix("builtins.")
    if _database_unavailable(exc):
        hint = out_of_connections_hint(exc, request.app.state.plane.metadata.pool_size)
        log.warning(
            "request failed: the metadata database is out of reach",
            method=request.method,
            path=request.url.path,
            error_type=kind,
            error=str(exc)[:500],
            hint=hint,
        )
        detail = "the metadata database is out of reach for now: " + (hint or str(exc)[:300])
        body = m.Problem(detail=detail + "; try again (a launch with the same name is safe)")
        return JSONResponse(body.model_dump(exclude_none=True), 503, headers={"Retry-After": "1"})
    log.error(
        "request failed",
        method=request.method,
        path=request.url.path,
        error_type=kind,
        error=str(exc)[:500],
        exc_info=exc,
    )
    # uvicorn logs the exception again when it reaches it: its line is dropped (`_serve`).
    exc.__dict__["taskfabric_logged"] = True
    body = m.Problem(detail=f"internal server error ({kind}); the server's log has the traceback")
    return JSONResponse(body.model_dump(exclude_none=True), 500)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = jsonable_encoder(exc.errors())
    detail = "; ".join(f"{_location(e.get('loc', ()))}: {_message(e)}" for e in errors)
    body = m.Problem(detail=f"invalid request: {detail}", errors=errors)
    return JSONResponse(body.model_dump(exclude_none=True), 422)


def create_app(config: Config, *, plane: ControlPlane | None = None) -> FastAPI:
    """The API application on `config`'s database and blob store (or on `plane`).

    The web console, which stands on this API, is added by `taskfabric.console.mount(app)`
    (`taskfabric server` runs `serve(..., extend=(mount,))`).
    """
    app = FastAPI(
        docs_url=None,  # served by `add_docs`, without a CDN
        redoc_url=None,
        title="taskfabric",
        version=__version__,
        summary="Typed, durable workflows: the control plane API.",
        description=(
            "Register code, launch workflows and launch plans, follow executions. "
            "Authenticate with `Authorization: Bearer <token>`; a token sees only its "
            "projects, and anything elsewhere answers 404."
        ),
    )
    app.state.plane = plane if plane is not None else ControlPlane(config)
    app.add_middleware(BodyLimit, config=config)
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(TaskfabricError, _taskfabric_error)
    app.add_exception_handler(Exception, _internal_error)

    @app.get("/healthz", tags=["health"], summary="Liveness and version")
    def healthz() -> m.Health:
        return m.Health(status="ok", version=__version__)

    app.include_router(api)
    add_docs(app)
    return app
