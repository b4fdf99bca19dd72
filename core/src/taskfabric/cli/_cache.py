"""`taskfabric cache list | show | evict`"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

import click
from rich.table import Table

from taskfabric.cli._common import err, fmt_age, fmt_time, out, state, user_errors
from taskfabric.errors import TaskfabricError

if TYPE_CHECKING:
    from taskfabric.catalog import Catalog


@click.group()
def cache() -> None:
    """The data catalog: cached task results."""


def _catalog() -> Catalog:
    from taskfabric.catalog import Catalog
    from taskfabric.metadata import MetadataStore

    return Catalog(MetadataStore(state().config.metadata_url).engine)


@cache.command("list")
@click.option("--task", default=None, help="Task name contains this.")
@click.option("--project", default=None)
@click.option("--limit", default=50, show_default=True)
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def list_entries(task: str | None, project: str | None, limit: int, output_format: str) -> None:
    """Cache entries, newest first."""
    with user_errors():
        entries = _catalog().list(task=task, project=project, limit=limit)
    if output_format == "json":
        out.print_json(json.dumps([vars(e) for e in entries]))
        return
    if not entries:
        err.print("no cache entries" + (f" for task '{task}'" if task else ""))
        return
    now = time.time()
    table = Table(box=None, header_style="bold")
    for col in ("KEY", "TASK", "VERSION", "PROJECT/DOMAIN", "CREATED", "EXPIRES", "EXECUTION"):
        table.add_column(col)
    for e in entries:
        expires = (
            "never"
            if e.expires_at is None
            else ("expired" if e.expires_at <= now else f"in {int(e.expires_at - now)}s")
        )
        table.add_row(
            e.key[:16],
            e.task_name,
            e.cache_version,
            f"{e.project}/{e.domain}",
            fmt_age(e.created_at),
            expires,
            e.execution_id,
        )
    out.print(table)


@cache.command("show")
@click.argument("key")
def show(key: str) -> None:
    """One entry: which execution produced it, when, its inputs and outputs."""
    from taskfabric.engine import Engine

    with user_errors():
        found = _catalog().find(key)
        if not found:
            raise TaskfabricError(f"no cache entry with key {key}…: `taskfabric cache list`")
        if len(found) > 1:
            raise TaskfabricError(
                f"{key} matches several entries: " + ", ".join(e.key[:16] for e in found)
            )
        e = found[0]
        with Engine(state().config) as engine:
            inputs = engine.read_literals(e.inputs_uri)
            outputs = engine.read_literals(e.outputs_uri)
    from taskfabric.types import literal_to_display

    out.print(f"[bold]cache entry {e.key}[/]")
    out.print(f"  task        {e.task_name}  (version {e.cache_version})")
    out.print(f"  project     {e.project}/{e.domain}")
    out.print(
        f"  produced by execution {e.execution_id}, node {e.node_id}, {fmt_time(e.created_at)}"
    )
    out.print(f"  expires     {'never' if e.expires_at is None else fmt_time(e.expires_at)}")
    out.print(f"  interface   {e.interface_hash}")
    out.print(f"  inputs hash {e.inputs_hash}")
    for label, values in (("inputs", inputs), ("outputs", outputs)):
        if values is None:
            out.print(f"  {label}      [red]unreadable[/] (a run will recompute the entry)")
            continue
        out.print(f"  {label}")
        for name in sorted(values.literals):
            out.print(f"    {name} = {literal_to_display(values.literals[name])}", markup=False)


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(
            f"'{text}' is not an age: write e.g. 90s, 30m, 12h or 7d", param_hint="--older-than"
        ) from None


@cache.command("evict")
@click.option("--task", default=None, help="Entries of tasks whose name contains this.")
@click.option("--version", default=None, help="Entries of this cache version.")
@click.option("--older-than", default=None, help="Entries older than this age (30m, 7d).")
@click.option("--key", default=None, help="The entry with this key (or key prefix).")
@click.option("--expired", is_flag=True, help="Entries past their time-to-live.")
@click.option("--project", default=None)
def evict(
    task: str | None,
    version: str | None,
    older_than: str | None,
    key: str | None,
    expired: bool,
    project: str | None,
) -> None:
    """Delete cache entries (outputs stay in the blob store)."""
    cutoff = time.time() - _seconds(older_than) if older_than else None
    with user_errors():
        try:
            n = _catalog().evict(
                task=task,
                version=version,
                older_than=cutoff,
                key=key,
                expired=expired,
                project=project,
            )
        except ValueError as exc:
            raise TaskfabricError(str(exc)) from exc
    out.print(f"evicted {n} cache entr{'y' if n == 1 else 'ies'}")
