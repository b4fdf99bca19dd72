"""taskfabric-http: calls to external services as typed tasks, throttled by resource pools.

```python
from taskfabric import task
from taskfabric_http import HttpRequest

@task(config=HttpRequest(service="geo", url="/geocode", params={"q": "{inputs.address}"},
                         outputs={"o0": "$.results[0]"}))
def geocode(address: str) -> Location: ...
```

`HttpJob` runs a long-running remote job (submit, poll, fetch, cancel); `pool("geo-api")` and
`service("geo")` throttle calls that a Python task makes itself. Services are declared in the
config file (`[backends.http.services.NAME]`). See docs/plugins/http.md.
"""

from typing import TYPE_CHECKING

from taskfabric.lazy import lazy_exports
from taskfabric_http._config import Call, HttpJob, HttpRequest
from taskfabric_http._errors import (
    HttpClientError,
    HttpConfigError,
    HttpConnectError,
    HttpError,
    HttpJobFailed,
    HttpResponseError,
    HttpServerError,
    HttpThrottled,
    TemplateError,
)
from taskfabric_http._pools import PoolLease, PoolTimeout, pool
from taskfabric_http._settings import AuthConfig, HttpSettings, ServiceConfig

if TYPE_CHECKING:
    from taskfabric_http._backend import HttpBackend
    from taskfabric_http._client import ServiceClient, service
    from taskfabric_http._task_types import HttpJobTaskType, HttpTaskType

#: What imports httpx, on first use: every run loads this package (for its hook module),
#: and a run that calls no HTTP service needs none of it.
__getattr__ = lazy_exports(
    __name__,
    {
        "HttpBackend": "taskfabric_http._backend",
        "ServiceClient": "taskfabric_http._client",
        "service": "taskfabric_http._client",
        "HttpJobTaskType": "taskfabric_http._task_types",
        "HttpTaskType": "taskfabric_http._task_types",
    },
)

__version__ = "0.1.0"

__all__ = [
    "AuthConfig",
    "Call",
    "HttpBackend",
    "HttpClientError",
    "HttpConfigError",
    "HttpConnectError",
    "HttpError",
    "HttpJob",
    "HttpJobFailed",
    "HttpJobTaskType",
    "HttpRequest",
    "HttpResponseError",
    "HttpServerError",
    "HttpSettings",
    "HttpTaskType",
    "HttpThrottled",
    "PoolLease",
    "PoolTimeout",
    "ServiceClient",
    "ServiceConfig",
    "TemplateError",
    "__version__",
    "pool",
    "service",
]
