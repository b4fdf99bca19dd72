"""The web console: executions, their graphs and logs, launching, the registry and the pools,
in a browser.

`mount(app)` adds it to the API application: pages under /console/ (HTML shells, each drawn
by one hand-written ES module from the HTTP API the command line uses, so there is no
JavaScript build), their assets under /console/static/ (shipped in the wheel, served from
memory, gzipped, with ETags: `_assets.py`), the few API routes the views need beyond the
command line's (`_api.py`), and the session middleware that
lets a signed-in browser call the API with its cookie (`_session.py`). The console stands on
the server's API, so the server does not import it: `taskfabric server` adds it through
`serve(..., extend=(mount,))`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def mount(app: FastAPI) -> None:
    """Serve the console from `app`: pages, assets, its API routes and the cookie sessions."""
    from fastapi.responses import RedirectResponse

    from taskfabric.console._api import router as api_router
    from taskfabric.console._assets import Assets
    from taskfabric.console._data import router as data_router
    from taskfabric.console._pages import ASSETS_URL, STATIC
    from taskfabric.console._pages import router as pages_router
    from taskfabric.console._session import SessionMiddleware

    app.include_router(api_router)
    app.include_router(data_router)
    app.include_router(pages_router)
    app.mount(ASSETS_URL, Assets(STATIC), name="console-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/console/", status_code=307)

    app.add_middleware(SessionMiddleware)


__all__ = ["mount"]
