"""A client of the HTTP API (httpx), typed by the API's models; the command line uses it when
`[server] url` is set."""

from __future__ import annotations

import os
import ssl
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric.config import Config
from taskfabric.errors import TaskfabricError
from taskfabric.server import _models as m

if TYPE_CHECKING:
    import httpx

TOKEN_ENV_VAR = "TASKFABRIC_TOKEN"
API = "/api/v1"
_ENDED = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")


class ServerError(TaskfabricError):
    """The server refused a request (`status`, its message), or could not be reached (0)."""

    def __init__(self, status: int, message: str, input: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.input = input


def _segment(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


class Client:
    """Talks to `taskfabric server` at `url` with an API token.

    `http` replaces the HTTP client (e.g. FastAPI's `TestClient`, which is an `httpx.Client`).
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        http: httpx.Client | None = None,
        ca_file: str | os.PathLike[str] | None = None,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if http is None:
            verify: ssl.SSLContext | bool = True
            if ca_file is not None:
                verify = ssl.create_default_context(cafile=os.fspath(ca_file))
            http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify)
        http.headers.update(headers)
        self._http = http

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise ServerError(
                0,
                f"cannot reach the server at {self.url} ({type(exc).__name__}: {exc}); is "
                "`taskfabric server` running there? ([server] url in the config names it)",
            ) from None
        if response.status_code >= 400:
            try:
                body = response.json()
            except ValueError:
                body = {"detail": response.text.strip() or response.reason_phrase}
            detail = body.get("detail") if isinstance(body, dict) else None
            message = detail if isinstance(detail, str) else str(body)
            raise ServerError(
                response.status_code,
                f"server: {message}",
                body.get("input") if isinstance(body, dict) else None,
            )
        return response.json() if response.content else None

    def _scope(self, project: str, domain: str) -> str:
        return f"{API}/projects/{_segment(project)}/domains/{_segment(domain)}"

    # -- general ----------------------------------------------------------------------

    def health(self) -> m.Health:
        return m.Health.model_validate(self._request("GET", "/healthz"))

    def whoami(self) -> m.WhoAmI:
        return m.WhoAmI.model_validate(self._request("GET", f"{API}/whoami"))

    def projects(self) -> list[m.ProjectInfo]:
        return [m.ProjectInfo.model_validate(p) for p in self._request("GET", f"{API}/projects")]

    # -- registry ---------------------------------------------------------------------

    def register(self, package: Any) -> m.Registration:
        """Send a `taskfabric.registry.Package` (built here, where the code is) to record."""
        data = package.to_bytes()
        path = self._scope(package.project, package.domain) + "/registrations"
        body = self._request(
            "POST", path, content=data, headers={"Content-Type": "application/x-tar"}
        )
        return m.Registration.model_validate(body)

    def upload(self, project: str, domain: str, path: str | os.PathLike[str]) -> m.Upload:
        """Upload a local file (or a directory, as a tar.gz) for a file, directory or
        dataframe input; pass `{"upload": result.ref}` as the input's value in `launch`."""
        local = Path(path)
        if not local.exists():
            raise FileNotFoundError(f"no such file or directory: {local}")
        url = self._scope(project, domain) + "/uploads"
        headers = {"Content-Type": "application/octet-stream"}
        if local.is_dir():
            with tempfile.TemporaryFile() as tar_file:
                with tarfile.open(fileobj=tar_file, mode="w:gz") as tar:
                    for child in sorted(local.iterdir()):
                        tar.add(child, arcname=child.name)
                tar_file.seek(0)
                params = {"name": local.name or "dir", "kind": "directory"}
                body = self._request("POST", url, params=params, content=tar_file, headers=headers)
        else:
            with local.open("rb") as fh:
                params = {"name": local.name, "kind": "file"}
                body = self._request("POST", url, params=params, content=fh, headers=headers)
        return m.Upload.model_validate(body)

    def entities(
        self, project: str, domain: str, kind: str = "workflow", name: str | None = None
    ) -> list[m.Entity]:
        params = {"kind": kind, **({"name": name} if name else {})}
        found = self._request("GET", self._scope(project, domain) + "/entities", params=params)
        return [m.Entity.model_validate(e) for e in found]

    def workflow(
        self, project: str, domain: str, name: str, version: str | None = None
    ) -> m.WorkflowDetail:
        path = self._scope(project, domain) + f"/workflows/{_segment(name)}"
        params = {"version": version} if version else {}
        return m.WorkflowDetail.model_validate(self._request("GET", path, params=params))

    # -- executions -------------------------------------------------------------------

    def launch(
        self,
        project: str,
        domain: str,
        *,
        workflow: str | None = None,
        launch_plan: str | None = None,
        version: str | None = None,
        inputs: Mapping[str, Any] | None = None,
        name: str | None = None,
    ) -> m.Launched:
        """Launch a registered workflow (or launch plan). With `name`, retrying is safe: the
        same name and inputs return the execution made the first time."""
        body = m.LaunchRequest(
            workflow=workflow,
            launch_plan=launch_plan,
            version=version,
            inputs=dict(inputs or {}),
            name=name,
        )
        path = self._scope(project, domain) + "/executions"
        found = self._request("POST", path, json=body.model_dump(exclude_none=True))
        return m.Launched.model_validate(found)

    def executions(
        self,
        *,
        project: str | None = None,
        domain: str | None = None,
        phases: Iterable[str] = (),
        workflow: str | None = None,
        launch_plan: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[m.Execution]:
        params: dict[str, Any] = {"limit": limit, "offset": offset}
        for key, value in (
            ("project", project),
            ("domain", domain),
            ("workflow", workflow),
            ("launch_plan", launch_plan),
        ):
            if value:
                params[key] = value
        if phases:
            params["phase"] = list(phases)
        found = self._request("GET", f"{API}/executions", params=params)
        return [m.Execution.model_validate(e) for e in found]

    def execution(
        self, ref: str, *, values: bool = True, events: bool = False, display: bool = False
    ) -> m.ExecutionDetail:
        params = {"values": values, "events": events, "display": display}
        found = self._request("GET", f"{API}/executions/{_segment(ref)}", params=params)
        return m.ExecutionDetail.model_validate(found)

    def node_data(self, ref: str, node_id: str) -> m.NodeData:
        path = f"{API}/executions/{_segment(ref)}/nodes/{node_id}/data"
        return m.NodeData.model_validate(self._request("GET", path))

    def task_log(
        self, ref: str, node_id: str, *, attempt: int | None = None, offset: int = 0
    ) -> m.TaskLog:
        """A piece of a task's attempt log from `offset` (see `m.TaskLog`)."""
        params: dict[str, Any] = {"offset": offset}
        if attempt is not None:
            params["attempt"] = attempt
        path = f"{API}/executions/{_segment(ref)}/logs/{_segment(node_id)}"
        return m.TaskLog.model_validate(self._request("GET", path, params=params))

    def cancel(self, ref: str, reason: str | None = None) -> m.PhaseResult:
        body = m.CancelRequest(reason=reason) if reason else m.CancelRequest()
        path = f"{API}/executions/{_segment(ref)}/cancel"
        return m.PhaseResult.model_validate(self._request("POST", path, json=body.model_dump()))

    def relaunch(self, ref: str, name: str | None = None) -> m.Launched:
        path = f"{API}/executions/{_segment(ref)}/relaunch"
        found = self._request("POST", path, json={"name": name} if name else {})
        return m.Launched.model_validate(found)

    def recover(self, ref: str) -> m.Execution:
        path = f"{API}/executions/{_segment(ref)}/recover"
        return m.Execution.model_validate(self._request("POST", path))

    def wait(self, ref: str, *, timeout: float | None = None, poll: float = 0.5) -> m.Execution:
        """Poll until the execution ends; its last state."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            found = self.executions_by_ref(ref)
            if found.phase in _ENDED:
                return found
            if deadline is not None and time.monotonic() > deadline:
                raise ServerError(0, f"execution {ref} is still {found.phase} after {timeout}s")
            time.sleep(poll)

    def executions_by_ref(self, ref: str) -> m.Execution:
        return self.execution(ref, values=False).execution

    # -- launch plans -----------------------------------------------------------------

    def launch_plans(self, project: str, domain: str) -> list[m.LaunchPlan]:
        found = self._request("GET", self._scope(project, domain) + "/launch_plans")
        return [m.LaunchPlan.model_validate(p) for p in found]

    def launch_plan(
        self, project: str, domain: str, name: str, version: str | None = None
    ) -> m.LaunchPlan:
        path = self._scope(project, domain) + f"/launch_plans/{_segment(name)}"
        params = {"version": version} if version else {}
        return m.LaunchPlan.model_validate(self._request("GET", path, params=params))

    def activate(self, project: str, domain: str, name: str, version: str) -> m.Activation:
        path = self._scope(project, domain) + f"/launch_plans/{_segment(name)}/activate"
        return m.Activation.model_validate(self._request("POST", path, json={"version": version}))

    def deactivate(self, project: str, domain: str, name: str) -> m.Activation:
        path = self._scope(project, domain) + f"/launch_plans/{_segment(name)}/deactivate"
        return m.Activation.model_validate(self._request("POST", path))

    # -- tokens -----------------------------------------------------------------------

    def tokens(self) -> list[m.Token]:
        return [m.Token.model_validate(t) for t in self._request("GET", f"{API}/tokens")]

    def create_token(
        self, projects: Iterable[str], role: str, name: str = "", expires_in: float | None = None
    ) -> m.TokenCreated:
        body: dict[str, Any] = {"projects": list(projects), "role": role, "name": name}
        if expires_in is not None:
            body["expires_in"] = expires_in
        return m.TokenCreated.model_validate(self._request("POST", f"{API}/tokens", json=body))

    def revoke_token(self, token_id: str) -> m.Token:
        path = f"{API}/tokens/{_segment(token_id)}"
        return m.Token.model_validate(self._request("DELETE", path))


def token_for(config: Config, env: Mapping[str, str] | None = None) -> str | None:
    """The API token: $TASKFABRIC_TOKEN, else the contents of `[server] token_file`."""
    env = os.environ if env is None else env
    token = env.get(TOKEN_ENV_VAR, "").strip()
    if token:
        return token
    path: Path | None = config.server.token_file
    if path is None:
        return None
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError as exc:
        raise TaskfabricError(
            f"cannot read the API token from {path} ([server] token_file): {exc.strerror}"
        ) from None


def client_for(config: Config) -> Client | None:
    """A client of the server the config names (`[server] url`), or None: use the local store."""
    if not config.server.url:
        return None
    return Client(config.server.url, token_for(config), ca_file=config.server.ca_file)
