"""`taskfabric launch WORKFLOW --input name=value ...`: launch a registered workflow or launch
plan, on the configured server or on the local store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from taskfabric.cli._common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    err,
    sigterm_as_interrupt,
    state,
    user_errors,
)
from taskfabric.cli._remote import (
    literal_inputs,
    local_plane,
    print_ended,
    print_launched,
    remote_client,
    split_inputs,
    upload_context,
)


@click.command()
@click.argument("workflow", required=False)
@click.option("--launch-plan", "launch_plan", default=None, help="Launch this plan instead.")
@click.option("--project", default=None, help="Project (default: [project] name).")
@click.option("--domain", default=None, help="Domain (default: [project] domain).")
@click.option("--version", default=None, help="Default: the latest (a plan: its active one).")
@click.option("--name", default=None, help="Execution name: launching a name again is a no-op.")
@click.option(
    "-i", "--input", "inputs", multiple=True, metavar="NAME=VALUE", help="An input (repeatable)."
)
@click.option("--wait", is_flag=True, help="Wait for the end and print the outputs.")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def launch(
    workflow: str | None,
    launch_plan: str | None,
    project: str | None,
    domain: str | None,
    version: str | None,
    name: str | None,
    inputs: tuple[str, ...],
    wait: bool,
    output_format: str,
) -> None:
    """Launch a registered WORKFLOW (or --launch-plan NAME) with --input NAME=VALUE options,
    parsed by the declared types as `taskfabric run` parses them.

    Goes to the server of `[server] url` when one is set; otherwise it queues the execution
    on the local store, and --wait runs it here.
    """
    if (workflow is None) == (launch_plan is None):
        raise click.UsageError("give a WORKFLOW or --launch-plan NAME (one of them)")
    cfg = state().config
    project = project or cfg.project.name
    domain = domain or cfg.project.domain
    with user_errors():
        raw = split_inputs(inputs)
        client = remote_client()
    if client is not None:
        with client, user_errors():
            interface, what = _remote_interface(
                client, project, domain, workflow, launch_plan, version
            )
            values = _remote_values(client, project, domain, interface, raw, what)
            launched = client.launch(
                project,
                domain,
                workflow=workflow,
                launch_plan=launch_plan,
                version=version,
                inputs=values,
                name=name,
            )
            print_launched(
                launched,
                "text" if wait else output_format,
                local=False,
                id_to_stdout=not (wait and output_format == "json"),
            )
            if wait:
                client.wait(launched.execution.id)
                detail = client.execution(launched.execution.id, values=True, display=True)
                if not print_ended(detail, output_format):
                    sys.exit(EXIT_FAILED)
        return
    from taskfabric.server import ANONYMOUS_ADMIN

    with local_plane() as plane:
        ctx = upload_context(plane)
        with user_errors():

            def convert(interface: Any, what: str) -> dict[str, Any]:
                return literal_inputs(interface, raw, what=what, ctx=ctx)

            launched = plane.launch_literals(
                ANONYMOUS_ADMIN,
                project,
                domain,
                workflow=workflow,
                launch_plan=launch_plan,
                version=version,
                inputs=convert,
                name=name,
            )
        print_launched(
            launched,
            "text" if wait else output_format,
            local=not wait,
            id_to_stdout=not (wait and output_format == "json"),
        )
        if wait:
            _run_here(plane, launched.execution.id, output_format)


def _remote_interface(
    client: Any,
    project: str,
    domain: str,
    workflow: str | None,
    launch_plan: str | None,
    version: str | None,
) -> tuple[Any, str]:
    """The interface (a TypedInterface) of what is launched, read from the server."""
    from taskfabric.core.v1 import interface_pb2
    from taskfabric.server._inputs import literal_type_from_json

    if launch_plan is not None:
        plan = client.launch_plan(project, domain, launch_plan, version)
        detail = client.workflow(project, domain, plan.workflow, plan.workflow_version)
        what = f"launch plan '{launch_plan}'"
    else:
        assert workflow is not None
        detail = client.workflow(project, domain, workflow, version)
        what = f"workflow '{workflow}'"
    interface = interface_pb2.TypedInterface()
    for p in detail.inputs:
        interface.inputs.add(name=p.name, type=literal_type_from_json(p.literal_type))
    return interface, what


def _remote_values(
    client: Any, project: str, domain: str, interface: Any, raw: dict[str, str], what: str
) -> dict[str, Any]:
    """Command-line inputs as the API's JSON values; a file, directory or dataframe input
    names a local path, which is uploaded first (`{"upload": ref}`)."""
    from taskfabric.server import InputError
    from taskfabric.server._inputs import is_blob_type
    from taskfabric.types import literal_to_json

    declared = {p.name: p.type for p in interface.inputs}
    blobs = {n: t for n, t in raw.items() if n in declared and is_blob_type(declared[n])}
    values: dict[str, Any] = {
        k: literal_to_json(v)
        for k, v in literal_inputs(
            interface, {n: t for n, t in raw.items() if n not in blobs}, what=what
        ).items()
    }
    for name, text in blobs.items():
        local = Path(text).expanduser()
        if not local.exists():
            raise InputError(name, f"no such file or directory: {text} (give a local path)")
        done = client.upload(project, domain, local)
        err.print(f"uploaded {name} = {text} ({done.size} bytes)", markup=False)
        values[name] = {"upload": done.ref}
    return values


def _run_here(plane: Any, execution_id: str, output_format: str) -> None:
    """Run a queued execution in this process (the local --wait)."""
    from taskfabric.cli._progress import RunProgress
    from taskfabric.server._views import execution_detail

    engine = plane.engine
    with user_errors():
        rec = engine.find_execution(execution_id)
    progress = RunProgress(err, rec.workflow_name.rsplit(".", 1)[-1])
    progress.execution_id = rec.id
    try:
        with user_errors(), sigterm_as_interrupt(), progress:
            engine.resume(rec.id, on_event=progress)
    except KeyboardInterrupt:
        err.print(f"[magenta]aborted[/]: execution {rec.id} was cancelled")
        sys.exit(EXIT_ABORTED)
    found = engine.find_execution(rec.id)
    detail = execution_detail(engine, found, values=True, display=True)
    if not print_ended(detail, output_format):
        sys.exit(EXIT_FAILED)
