"""`taskfabric register`, `taskfabric launchplans list | activate | deactivate`,
`taskfabric entities list`"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from taskfabric.cli._common import EXIT_FAILED, err, fmt_age, out, state, user_errors

F = TypeVar("F", bound=Callable[..., Any])


def _scope_options(fn: F) -> F:
    fn = click.option(
        "--domain", default=None, help="Domain (default: [project] domain of the config)."
    )(fn)
    return click.option(
        "--project", default=None, help="Project (default: [project] name of the config)."
    )(fn)


def _scope(project: str | None, domain: str | None) -> tuple[str, str]:
    with user_errors():
        cfg = state().config.project
    return project or cfg.name, domain or cfg.domain


@contextmanager
def _registry() -> Iterator[Any]:
    from taskfabric.registry import registry_for

    registry = registry_for(state().config)
    try:
        yield registry
    finally:
        registry.metadata.close()


def _utc(at: float | None) -> str:
    return "-" if at is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(at))


@click.command()
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@_scope_options
@click.option(
    "--version", "version", required=True, help="The version to register, e.g. a git sha."
)
@click.option(
    "--image",
    default=None,
    metavar="IMAGE",
    help="The container image of every task that names none itself (container backends run "
    "the tasks in it), e.g. ghcr.io/acme/etl:3f9c0a1.",
)
@click.option(
    "--activate",
    is_flag=True,
    help="Also make this version the active one of every launch plan registered.",
)
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def register(
    path: Path,
    project: str | None,
    domain: str | None,
    version: str,
    image: str | None,
    activate: bool,
    output_format: str,
) -> None:
    """Register the tasks, workflows and launch plans under PATH (a folder, a package or a
    .py file) as VERSION, with a bundle of its source tree.

    Registering the same content again changes nothing; different content under an existing
    version is refused with a diff.
    """
    from taskfabric.cli._remote import remote_client
    from taskfabric.registry import RegistrationConflict, build_package
    from taskfabric.server import ServerError

    project, domain = _scope(project, domain)
    client = remote_client()
    if client is not None:
        # The package is built here, where the code is; the server records it (it never
        # imports user code) and is the only writer of its database and blob store.
        with user_errors():
            package = build_package(
                path, project=project, domain=domain, version=version, image=image
            )
            try:
                reg = client.register(package)
            except ServerError as exc:
                if exc.status != 409:
                    raise
                err.print("[bold red]error:[/] registration refused", markup=True)
                err.print(str(exc), markup=False, highlight=False)
                sys.exit(EXIT_FAILED)
            if activate:
                for e in reg.entities:
                    if e.kind == "launch_plan":
                        client.activate(project, domain, e.name, version)
        entities: list[dict[str, Any]] = [
            {"kind": e.kind, "name": e.name, "version": e.version, "status": e.status}
            for e in reg.entities
        ]
        bundle, digest = reg.bundle_digest, reg.bundle_digest
        skipped, unchanged = list(reg.skipped), reg.unchanged
    else:
        with user_errors(), _registry() as registry:
            try:
                result = registry.register(
                    path, project=project, domain=domain, version=version, image=image
                )
            except RegistrationConflict as exc:
                err.print("[bold red]error:[/] registration refused", markup=True)
                err.print(str(exc), markup=False, highlight=False)
                sys.exit(EXIT_FAILED)
            if activate:
                for e in result.entities:
                    if e.kind == "launch_plan":
                        registry.activate(project, domain, e.name, version)
        entities = [vars(e) for e in result.entities]
        bundle, digest = result.bundle_uri, result.bundle_digest
        skipped, unchanged = list(result.skipped), result.unchanged
    if output_format == "json":
        out.print_json(
            json.dumps(
                {
                    "project": project,
                    "domain": domain,
                    "version": version,
                    "image": image,
                    "bundle": bundle,
                    "entities": entities,
                    "skipped": skipped,
                }
            )
        )
        return
    table = Table(box=None, header_style="bold")
    for col in ("KIND", "NAME", "VERSION", "STATUS"):
        table.add_column(col)
    for row in entities:
        status = "[green]registered[/]" if row["status"] == "registered" else "[dim]unchanged[/]"
        table.add_row(str(row["kind"]).replace("_", " "), row["name"], row["version"], status)
    out.print(table)
    if skipped:
        err.print(f"not imported: {', '.join(skipped)}", markup=False)
    summary = (
        "nothing new: every entity was registered before with the same content"
        if unchanged
        else f"registered {project}/{domain} version {version}"
    )
    err.print(f"{summary} (bundle {digest[:12]})", markup=False)


@click.group()
def launchplans() -> None:
    """Launch plans: list them, activate or deactivate a version."""


@launchplans.command("list")
@_scope_options
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def list_launch_plans(project: str | None, domain: str | None, output_format: str) -> None:
    """Launch plans with their active version, schedule and next run (from the server
    when `[server] url` is set, else from the local store)."""
    from taskfabric.cli._remote import control

    project, domain = _scope(project, domain)
    with user_errors(), control() as ctl:
        plans = ctl.launch_plans(project, domain)
    rows: list[dict[str, Any]] = [
        {
            "name": p.name,
            "active_version": p.active_version,
            "latest_version": p.versions[0] if p.versions else p.version,
            "versions": len(p.versions),
            "workflow": p.workflow,
            "schedule": p.schedule,
            "next_run": p.next_slot,
            "activated_at": p.activated_at,
        }
        for p in plans
    ]
    if output_format == "json":
        out.print_json(json.dumps(rows))
        return
    if not rows:
        err.print(f"no launch plans registered in {project}/{domain}")
        return
    table = Table(box=None, header_style="bold")
    for col in ("NAME", "ACTIVE", "LATEST", "WORKFLOW", "SCHEDULE", "NEXT RUN", "ACTIVATED"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            r["active_version"] or "[dim]-[/]",
            f"{r['latest_version']} ({r['versions']})",
            r["workflow"],
            r["schedule"],
            _utc(r["next_run"]),
            fmt_age(r["activated_at"]),
        )
    out.print(table)


@launchplans.command("activate")
@click.argument("name")
@click.option("--version", "version", required=True, help="The version to make active.")
@_scope_options
def activate_launch_plan(name: str, version: str, project: str | None, domain: str | None) -> None:
    """Make VERSION the active version of launch plan NAME (its schedule replaces the
    previous version's)."""
    from taskfabric.cli._remote import remote_client

    project, domain = _scope(project, domain)
    client = remote_client()
    if client is not None:
        with user_errors():
            changed = client.activate(project, domain, name, version).changed
        if changed:
            err.print(f"launch plan {name}: version {version} is active", markup=False)
        else:
            err.print(f"launch plan {name} version {version} was already active", markup=False)
        return
    with user_errors(), _registry() as registry:
        previous = registry.active_version(project, domain, name)
        registry.activate(project, domain, name, version)
    if previous == version:
        err.print(f"launch plan {name} version {version} was already active", markup=False)
    else:
        moved = f" (was {previous})" if previous else ""
        err.print(f"launch plan {name}: version {version} is active{moved}", markup=False)


@launchplans.command("deactivate")
@click.argument("name")
@_scope_options
def deactivate_launch_plan(name: str, project: str | None, domain: str | None) -> None:
    """Deactivate launch plan NAME: its schedule stops."""
    from taskfabric.cli._remote import remote_client

    project, domain = _scope(project, domain)
    client = remote_client()
    if client is not None:
        with user_errors():
            done = client.deactivate(project, domain, name).changed
    else:
        with user_errors(), _registry() as registry:
            done = registry.deactivate(project, domain, name)
    err.print(
        f"launch plan {name} deactivated" if done else f"launch plan {name} was not active",
        markup=False,
    )


@click.group()
def entities() -> None:
    """Registered tasks, workflows and launch plans."""


@entities.command("list")
@click.option(
    "--kind",
    type=click.Choice(["task", "workflow", "launch_plan"]),
    default=None,
    help="Only this kind (default: all).",
)
@click.option("--name", default=None, help="Only this entity: lists its versions.")
@_scope_options
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def list_entities(
    kind: str | None,
    name: str | None,
    project: str | None,
    domain: str | None,
    output_format: str,
) -> None:
    """Registered entities, newest version first (from the server when `[server] url` is
    set, else from the local store)."""
    from taskfabric.cli._remote import control
    from taskfabric.registry import KINDS

    project, domain = _scope(project, domain)
    with user_errors(), control() as ctl:
        found = [
            e
            for k in ([kind] if kind else list(KINDS))
            for e in ctl.entities(project, domain, k, name)
        ]
    if output_format == "json":
        out.print_json(json.dumps([e.model_dump() for e in found]))
        return
    if not found:
        err.print(f"nothing registered in {project}/{domain}: `taskfabric register PATH` does that")
        return
    table = Table(box=None, header_style="bold")
    for col in ("KIND", "NAME", "VERSION", "REGISTERED", "DIGEST"):
        table.add_column(col)
    for e in found:
        table.add_row(
            e.kind.replace("_", " "), e.name, e.version, fmt_age(e.created_at), e.digest[:12]
        )
    out.print(table)
