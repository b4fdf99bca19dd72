"""`taskfabric ui`: the web console over this config's own database and blob store."""

from __future__ import annotations

import os
import socket
import webbrowser

import click

from taskfabric.cli._common import err, fail, out, state, user_errors

#: How long the sign-in token of one `taskfabric ui` lasts if the process is killed before it
#: can revoke it (a clean stop revokes it at once).
TOKEN_SECONDS = 7 * 24 * 3600


@click.command()
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8787,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free one).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Engine processes running launched executions (default: [server] workers).",
)
@click.option(
    "--scheduler/--no-scheduler",
    default=False,
    show_default=True,
    help="Also launch the active launch plans' schedules.",
)
@click.option("--open", "open_browser", is_flag=True, help="Open the console in a browser.")
def ui(port: int, workers: int | None, scheduler: bool, open_browser: bool) -> None:
    """Serve the web console for the embedded store (this config's database and blob store),
    on 127.0.0.1 only, until Ctrl-C.

    A sign-in link with a fresh admin token is printed (the token follows '#', so it never
    reaches a server log); the token is revoked when the console stops.
    """
    from taskfabric.console import mount
    from taskfabric.server import TokenStore, serve

    cfg = state().config
    if cfg.server.url:
        fail(
            f"this config talks to the server at {cfg.server.url}: open "
            f"{cfg.server.url}/console/ instead (`taskfabric ui` serves the embedded store)"
        )
    # Signing in is always on: a page on any site could otherwise drive a console on
    # 127.0.0.1 that lets everyone in. One person's own store and code: single-tenant.
    server = cfg.server.model_copy(update={"auth": True, "single_tenant": True})
    local = cfg.model_copy(update={"server": server})
    from taskfabric.metadata import MetadataStore

    metadata = MetadataStore(cfg.metadata_url)
    tokens = TokenStore(metadata)
    info, text = tokens.create(
        projects=["*"],
        role="admin",
        name=f"taskfabric ui ({socket.gethostname()}:{os.getpid()})",
        expires_in=TOKEN_SECONDS,
    )

    def listening(url: str) -> None:
        link = f"{url}/console/signin#token={text}"
        err.print("taskfabric ui: the web console of this config's store; Ctrl-C stops it.")
        out.print(link, markup=False, highlight=False, soft_wrap=True)
        if open_browser:
            webbrowser.open(link)

    try:
        with user_errors():
            serve(
                local,
                host="127.0.0.1",
                port=port,
                workers=workers,
                scheduler=scheduler,
                extend=(mount,),
                on_listening=listening,
            )
    finally:
        tokens.revoke(info.id)
        metadata.close()
