"""`service("geo")`: a client of a declared service for Python tasks that call it themselves.

Every request holds the service's pools (like an `http` task), carries its auth header and
timeouts, and follows its throttling and retry policy: a 429 pauses the pools and is sent
again; 5xx and connection errors are retried with backoff; other 4xx raise HttpClientError.

```python
with service("geo") as geo:
    found = geo.get("/geocode", params={"q": address}).json()
```
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from taskfabric import HoldError, TaskPools, task_pools
from taskfabric.config import Config, load_config
from taskfabric_http._pools import pool
from taskfabric_http._send import Caller, OutgoingRequest, make_client
from taskfabric_http._settings import ServiceConfig, resolve_service, services_of_config

__all__ = ["ServiceClient", "service"]


class ServiceClient:
    """Requests to one declared service, throttled by its pools."""

    def __init__(self, name: str, *, config: Config | None = None) -> None:
        self.config = config or load_config()
        self.name = name
        self.settings: ServiceConfig = resolve_service(
            services_of_config(self.config), name, "service()"
        )
        self._client: httpx.Client = make_client(self.settings)
        # The pools of the task that made this client, caught in its own thread so that
        # threads it starts can use the client too; None outside a task (a request with
        # pools then says what to do).
        self._pools: TaskPools | None = None
        if self.settings.pools:
            try:
                self._pools = task_pools()
            except HoldError:
                self._pools = None

    def request(
        self,
        method: str,
        url: str = "",
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
        pool_timeout: float | None = None,
    ) -> httpx.Response:
        """Send one request; a 2xx/3xx response, or an HttpError saying what went wrong."""
        request = OutgoingRequest(
            method=method.upper(),
            url=url,
            headers=dict(headers or {}),
            params=dict(params or {}),
            json=json,
            has_body=json is not None,
            idempotency_key=idempotency_key,
        )
        who = f"service '{self.name}'"
        if not self.settings.pools:
            return Caller(self.name, self.settings, self._client, who=who).send(request)
        with pool(*self.settings.pools, timeout=pool_timeout, pools=self._pools) as lease:
            caller = Caller(
                self.name,
                self.settings,
                self._client,
                who=who,
                on_pushback=lease.pushback,
                take_tokens=lease.take_tokens,
                pause_left=lease.pause_left,
            )
            return caller.send(request)

    def get(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def patch(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def delete(self, url: str = "", **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def service(name: str, *, config: Config | None = None) -> ServiceClient:
    """A client of service `name` of the config file (`[backends.http.services.NAME]`)."""
    return ServiceClient(name, config=config)
