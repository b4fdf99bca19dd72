"""The control plane server: the HTTP API, API tokens, and the client the CLI uses.

```python
app = create_app(config)                 # FastAPI, routes under /api/v1, /openapi.json
serve(config, port=8080, workers=4)      # the API, the scheduler and engine workers
client = Client("http://127.0.0.1:8080", token="tf_...")
client.launch("ml", "development", workflow="flows.etl.etl", inputs={"day": "2026-01-01"})
```

FastAPI and uvicorn are imported only by `create_app` and `serve`, so that importing
taskfabric (and the command line without a server) stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskfabric.server._auth import (
    ALL_PROJECTS,
    ANONYMOUS_ADMIN,
    Principal,
    Role,
    TokenError,
    TokenInfo,
    TokenStore,
)
from taskfabric.server._client import Client, ServerError, client_for
from taskfabric.server._inputs import InputError, json_to_literal, text_to_literal

if TYPE_CHECKING:
    from taskfabric.server._app import create_app
    from taskfabric.server._serve import serve
    from taskfabric.server._service import ControlPlane

_LAZY = {
    "create_app": "taskfabric.server._app",
    "serve": "taskfabric.server._serve",
    "ControlPlane": "taskfabric.server._service",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'taskfabric.server' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ALL_PROJECTS",
    "ANONYMOUS_ADMIN",
    "Client",
    "ControlPlane",
    "InputError",
    "Principal",
    "Role",
    "ServerError",
    "TokenError",
    "TokenInfo",
    "TokenStore",
    "client_for",
    "create_app",
    "json_to_literal",
    "serve",
    "text_to_literal",
]
