"""The console's pages: small HTML shells, each loading one ES module that draws the page
from the HTTP API. The shell carries the answers of the calls the module makes first, asked
through the same API in-process (`_inline.py`), so a page draws as soon as its module runs.
Signing in and out are the only forms the server itself handles."""

from __future__ import annotations

import hashlib
import html
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import QueryParams

from taskfabric._version import __version__
from taskfabric.console import _inline as inline
from taskfabric.console._session import COOKIE, csrf_for, csrf_ok, session_token
from taskfabric.server._auth import Principal
from taskfabric.server._service import ApiError, ControlPlane

STATIC = Path(__file__).parent / "static"
PREFIX = "/console"
#: Longest sign-in form body read (a token is ~60 characters).
_MAX_FORM = 4096
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = {
    "Content-Security-Policy": _CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _asset_version() -> str:
    """Changes whenever a static file does: browsers fetch new assets after an upgrade."""
    digest = hashlib.sha256(__version__.encode())
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


ASSETS = _asset_version()
#: Where the assets are served: a path that changes with them, so browsers keep them for a
#: year without asking again (and the modules' relative imports stay on that version).
ASSETS_URL = f"{PREFIX}/static/{ASSETS}"
router = APIRouter(prefix=PREFIX, include_in_schema=False)

#: Executions to a page of the list (executions.js's PAGE; it asks for one more).
EXECUTIONS_PAGE = 50
#: The kinds the registry page lists, in its order (registry.js's KINDS).
REGISTRY_KINDS = ("workflow", "task", "launch_plan")

_NAV = (
    ("executions", "Executions", "/"),
    ("registry", "Registry", "/registry"),
    ("pools", "Pools", "/pools"),
)


def _plane(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


def _who(request: Request) -> tuple[Principal, str] | None:
    """The signed-in principal and its session token ('' with auth off), or None."""
    plane = _plane(request)
    if not plane.auth:
        return plane.authenticate(None), ""
    token = session_token(list(request.scope["headers"]))
    if not token:
        return None
    try:
        return plane.authenticate(token), token
    except ApiError:
        return None


def _signin_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{PREFIX}/signin?next={quote(target, safe='')}", status_code=303)


def _shell(
    page: str,
    title: str,
    who: Principal,
    token: str,
    args: dict[str, Any],
    auth: bool,
    first: dict[str, bytes],
) -> HTMLResponse:
    e = html.escape
    nav = "".join(
        f'<a href="{PREFIX}{href}"{" class=current" if key == page else ""}>{label}</a>'
        for key, label, href in _NAV
    )
    signout = (
        f'<form method="post" action="{PREFIX}/signout" class="signout">'
        f'<input type="hidden" name="csrf" value="{e(csrf_for(token))}">'
        '<button type="submit">Sign out</button></form>'
        if auth
        else '<span class="muted">auth off</span>'
    )
    who_text = f"{who.name or who.token_id or 'local'} · {who.role.value}"
    projects = ", ".join(sorted(who.projects)).replace("*", "every project")
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="csrf" content="{e(csrf_for(token) if token else "")}">
<title>{e(title)} · taskfabric</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{ASSETS_URL}/console.css">
<link rel="modulepreload" href="{ASSETS_URL}/lib.js">
<link rel="modulepreload" href="{ASSETS_URL}/{page}.js">
<script type="module" src="{ASSETS_URL}/{page}.js"></script>
</head>
<body data-role="{e(who.role.value)}" data-page="{e(page)}">
<header class="top">
<a class="brand" href="{PREFIX}/">taskfabric</a>
<nav>{nav}</nav>
<span class="who" title="{e(projects)}">{e(who_text)}</span>
{signout}
</header>
<main id="main" data-args="{e(json.dumps(args))}"><p class="muted">Loading…</p></main>
{inline.script(first)}
</body>
</html>
"""
    return HTMLResponse(body, headers=_HEADERS)


def _first_calls(page: str, args: dict[str, Any], query: QueryParams) -> list[str]:
    """The GET calls a page's module makes before it draws, as it writes their URLs (each
    module says which in its first lines): those that need no answer of another."""
    one = {k: (query.getlist(k) or [""])[0] for k in query}
    if page == "executions":
        state: list[tuple[str, Any]] = [
            (k, one.get(k, "")) for k in ("project", "domain", "workflow", "launch_plan")
        ]
        state += [("phase", query.getlist("phase")), ("before", one.get("before", ""))]
        return [
            inline.url("/projects"),
            inline.url("/executions", [*state, ("limit", EXECUTIONS_PAGE + 1)]),
        ]
    if page == "execution":
        ref = inline.segment(str(args["ref"]))
        return [inline.url(f"/executions/{ref}/graph", [("values", "true")])]
    if page == "launch" and args.get("workflow"):
        where = _scope_path(str(args["project"]), str(args["domain"]))
        name = inline.segment(str(args["workflow"]))
        return [inline.url(f"{where}/workflows/{name}", [("version", args.get("version"))])]
    if page in ("launch", "registry"):
        return [inline.url("/projects")]
    if page == "pools":
        return [inline.url("/pools")]
    return []


def _scope_path(project: str, domain: str) -> str:
    return f"/projects/{inline.segment(project)}/domains/{inline.segment(domain)}"


def _then_calls(page: str, args: dict[str, Any], query: QueryParams, projects: Any) -> list[str]:
    """The calls a page makes once it has the projects: those of the project/domain it shows
    first (`?scope=`, else the first the token sees)."""
    if page not in ("launch", "registry") or args.get("workflow") or not isinstance(projects, list):
        return []
    choices = [f"{p['name']}/{d}" for p in projects for d in p["domains"]]
    asked = (query.getlist("scope") or [""])[0]
    scope = asked if asked in choices else (choices[0] if choices else "")
    if not scope:
        return []
    project, domain = scope.split("/", 1)
    where = _scope_path(project, domain)
    if page == "launch":
        return [inline.url(f"{where}/entities", [("kind", "workflow")])]
    return [
        inline.url(f"{where}/entities", [("kind", list(REGISTRY_KINDS))]),
        inline.url(f"{where}/launch_plans"),
    ]


async def _page(request: Request, page: str, title: str, **args: Any) -> Response:
    found = await run_in_threadpool(_who, request)
    if found is None:
        return _signin_redirect(request)
    who, token = found
    calls = _first_calls(page, args, request.query_params)
    first = await inline.answers(request.app, request, calls)
    projects_url = inline.url("/projects")
    projects = json.loads(first[projects_url]) if projects_url in first else None
    then = _then_calls(page, args, request.query_params, projects)
    if then:
        first.update(await inline.answers(request.app, request, then))
    return _shell(page, title, who, token, args, _plane(request).auth, first)


@router.get("/")
async def executions_page(request: Request) -> Response:
    return await _page(request, "executions", "Executions")


@router.get("/executions/{ref}")
async def execution_page(request: Request, ref: str) -> Response:
    return await _page(request, "execution", f"Execution {ref}", ref=ref)


@router.get("/launch")
async def launch_pick_page(request: Request) -> Response:
    return await _page(request, "launch", "Launch")


@router.get("/launch/{project}/{domain}/{workflow:path}")
async def launch_page(request: Request, project: str, domain: str, workflow: str) -> Response:
    return await _page(
        request,
        "launch",
        f"Launch {workflow}",
        project=project,
        domain=domain,
        workflow=workflow,
        version=request.query_params.get("version"),
    )


@router.get("/registry")
async def registry_page(request: Request) -> Response:
    return await _page(request, "registry", "Registry")


@router.get("/pools")
async def pools_page(request: Request) -> Response:
    return await _page(request, "pools", "Pools")


def _safe_next(target: str | None) -> str:
    """Only a path of this console: never another site (an open redirect)."""
    if not target or not target.startswith(PREFIX + "/") or target.startswith("//"):
        return PREFIX + "/"
    parts = urlsplit(target)
    return PREFIX + "/" if parts.scheme or parts.netloc else target


def _signin_form(error: str = "", target: str = "", status: int = 200) -> HTMLResponse:
    e = html.escape
    problem = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · taskfabric</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{ASSETS_URL}/console.css">
</head>
<body class="signin">
<form method="post" action="{PREFIX}/signin" id="signin">
<h1>taskfabric</h1>
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="off" required
 placeholder="tf_…" autofocus>
<input type="hidden" name="next" value="{e(target)}">
{problem}
<button type="submit">Sign in</button>
<p class="muted">An admin creates tokens with <code>taskfabric tokens create</code>.</p>
</form>
<script type="module" src="{ASSETS_URL}/signin.js"></script>
</body>
</html>
"""
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


@router.get("/signin")
def signin_page(request: Request) -> Response:
    if not _plane(request).auth:
        return RedirectResponse(PREFIX + "/", status_code=303)
    return _signin_form(target=_safe_next(request.query_params.get("next")))


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    data = await request.body()
    if len(data) > _MAX_FORM:
        return {}
    parsed = parse_qs(data.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[0] for k, v in parsed.items() if v}


@router.post("/signin")
async def signin(request: Request) -> Response:
    plane = _plane(request)
    if not plane.auth:
        return RedirectResponse(PREFIX + "/", status_code=303)
    if not _same_origin(request):
        return _signin_form("sign in from this console's own page", status=403)
    form = await _form(request)
    token = form.get("token", "").strip()
    target = _safe_next(form.get("next"))
    try:
        await run_in_threadpool(plane.authenticate, token)
    except ApiError as exc:
        return _signin_form(str(exc), target, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    token = session_token(list(request.scope["headers"]))
    form = await _form(request)
    if token and not csrf_ok(token, form.get("csrf")):
        return HTMLResponse("sign out from the console's own page", status_code=403)
    response = RedirectResponse(PREFIX + "/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response
