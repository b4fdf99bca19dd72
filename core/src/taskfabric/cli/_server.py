"""`taskfabric server` and `taskfabric tokens create | list | revoke`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from taskfabric.cli._common import err, fmt_age, fmt_time, out, state, user_errors
from taskfabric.cli._remote import remote_client
from taskfabric.errors import TaskfabricError


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: [server] host).")
@click.option("--port", type=int, default=None, help="Port (default: [server] port, 8080).")
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=None,
    help="Engine processes running executions at once (default: [server] workers).",
)
@click.option(
    "--scheduler/--no-scheduler",
    default=None,
    help="Launch the active launch plans' schedules (default: [server] scheduler).",
)
def server(host: str | None, port: int | None, workers: int | None, scheduler: bool | None) -> None:
    """Run the control plane: the HTTP API (/api/v1, /docs, /openapi.json), the scheduler and
    engine workers, on this config's database and blob store.

    SIGTERM or Ctrl-C stops it; running executions are left to be resumed, not aborted.
    """
    from taskfabric.console import mount
    from taskfabric.server import serve

    cfg = state().config
    settings = cfg.server
    shown_host = host or settings.host
    shown_port = settings.port if port is None else port
    shown_workers = settings.workers if workers is None else workers
    on = settings.scheduler if scheduler is None else scheduler
    err.print(
        f"taskfabric server on {'https' if settings.ssl_certfile else 'http'}://"
        f"{shown_host}:{shown_port}  workers {shown_workers}  "
        f"scheduler {'on' if on else 'off'}  auth {'on' if settings.auth else 'OFF'}",
        highlight=False,
        markup=False,
    )
    with user_errors():
        # The web console stands on the server's API: added here, above both.
        serve(cfg, host=host, port=port, workers=workers, scheduler=scheduler, extend=(mount,))


@click.group()
def tokens() -> None:
    """API tokens of the server: each has one role over some projects.

    With `[server] url` set these go to that server (they need an admin token); otherwise, or
    with --local, they change this config's database directly (how the first token is made).
    """


_local = click.option(
    "--local", is_flag=True, help="Use this config's database, not the configured server."
)


def _client(local: bool) -> Any:
    return None if local else remote_client()


@contextmanager
def _token_store() -> Iterator[Any]:
    from taskfabric.metadata import MetadataStore
    from taskfabric.server import TokenStore

    metadata = MetadataStore(state().config.metadata_url)
    try:
        yield TokenStore(metadata)
    finally:
        metadata.close()


@tokens.command("create")
@click.option(
    "--project",
    "projects",
    multiple=True,
    required=True,
    help="A project the token may use (repeatable; '*' for every project).",
)
@click.option(
    "--role",
    type=click.Choice(["viewer", "launcher", "admin"]),
    required=True,
    help="viewer: read; launcher: + launch, cancel, relaunch, recover; admin: + register, "
    "activate launch plans, manage tokens.",
)
@click.option("--name", default="", help="Who or what uses it (shown by `tokens list`).")
@click.option(
    "--expires-in",
    "expires_in",
    default=None,
    metavar="DURATION",
    help="It stops working after this long: 90d, 12h, 30m or seconds (default: never).",
)
@_local
def create(
    projects: tuple[str, ...], role: str, name: str, expires_in: str | None, local: bool
) -> None:
    """Create a token and print it (on stdout, once: it cannot be shown again)."""
    with user_errors():
        lifetime = None if expires_in is None else _seconds(expires_in)
        client = _client(local)
        if client is not None:
            with client:
                created = client.create_token(projects, role, name, expires_in=lifetime)
            info, text = created.info, created.token
        else:
            with _token_store() as store:
                info, text = store.create(
                    projects=projects, role=role, name=name, expires_in=lifetime
                )
    until = f", until {fmt_time(info.expires_at)}" if info.expires_at is not None else ""
    err.print(
        f"created token {info.id}{f' ({info.name})' if info.name else ''}: "
        f"{info.role.value} of "
        f"{', '.join(info.projects)}{until}. It is shown only now: keep it in "
        "$TASKFABRIC_TOKEN or the file named by [server] token_file.",
        highlight=False,
        markup=False,  # the text is plain: '[server]' is not a style
    )
    out.print(text, markup=False, highlight=False)


_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _seconds(text: str) -> float:
    """'90d', '12h', '30m', '45s' or '3600' as seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text.lower())
    if found is None or float(found.group(1)) <= 0:
        raise TaskfabricError(
            f"--expires-in {text!r}: give a positive duration such as 90d, 12h, 30m or 3600 "
            "(seconds)"
        )
    return float(found.group(1)) * _UNITS[found.group(2)]


@tokens.command("list")
@click.option("--all", "show_all", is_flag=True, help="Revoked tokens too (local only).")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
@_local
def list_tokens(show_all: bool, output_format: str, local: bool) -> None:
    """Tokens: id, name, role, projects, when created, last used and expiring, state."""
    with user_errors():
        client = _client(local)
        if client is not None:
            with client:
                rows: list[Any] = [t.model_dump() for t in client.tokens()]
        else:
            with _token_store() as store:
                found = store.list(include_revoked=show_all)
            rows = [
                {**vars(t), "role": t.role.value, "projects": list(t.projects), "state": t.state}
                for t in found
            ]
    if output_format == "json":
        out.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        err.print("no tokens: `taskfabric tokens create --project P --role admin` makes one")
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "NAME", "ROLE", "PROJECTS", "CREATED", "LAST USED", "EXPIRES", "STATE"):
        table.add_column(col)
    for t in rows:
        table.add_row(
            escape(t["id"]),
            escape(t["name"]),
            str(t["role"]),
            escape(", ".join(t["projects"])),
            fmt_time(t["created_at"]),
            fmt_age(t["last_used_at"]) if t["last_used_at"] else "never",
            fmt_time(t["expires_at"]) if t["expires_at"] else "never",
            t["state"],
        )
    out.print(table)


@tokens.command("revoke")
@click.argument("token_id")
@_local
def revoke(token_id: str, local: bool) -> None:
    """Revoke a token at once (by its id, as `tokens list` shows it)."""
    with user_errors():
        client = _client(local)
        if client is not None:
            with client:
                client.revoke_token(token_id)
        else:
            with _token_store() as store:
                if not store.revoke(token_id):
                    raise TaskfabricError(f"no active token '{token_id}': `taskfabric tokens list`")
    err.print(f"revoked token {token_id}", markup=False)
