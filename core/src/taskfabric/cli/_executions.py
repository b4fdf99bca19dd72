"""`taskfabric executions list | show | resume | run | cancel | relaunch | recover`"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click
from rich.table import Table

from taskfabric.cli._common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    elapsed,
    err,
    fmt_age,
    fmt_duration,
    fmt_time,
    out,
    phase_text,
    sigterm_as_interrupt,
    state,
    user_errors,
)
from taskfabric.cli._remote import as_record, print_detail, print_json, remote_client
from taskfabric.cli._show import node_sort_key, print_events, print_nodes
from taskfabric.core.v1 import types_pb2

if TYPE_CHECKING:
    from taskfabric.metadata import NodeRecord


@click.group()
def executions() -> None:
    """Inspect and resume executions."""


def _engine() -> Any:
    from taskfabric.engine import Engine

    return Engine(state().config)


def _nothing_listed(
    project: str | None,
    domain: str | None,
    phase: tuple[str, ...],
    workflow: str | None,
    *,
    remote: bool,
) -> str:
    """What an empty listing means: a filter matched nothing, or there is nothing yet."""
    filters = [
        f"{name} {value}"
        for name, value in (
            ("project", project),
            ("domain", domain),
            ("phase", ",".join(phase)),
            ("workflow", workflow),
        )
        if value
    ]
    if filters:
        seen = " (or this token cannot see it)" if remote and project else ""
        return f"no executions match {', '.join(filters)}{seen}"
    if remote:
        return "no executions this token can see yet: `taskfabric launch WORKFLOW` starts one"
    return "no executions yet: `taskfabric run FILE.py:WORKFLOW` starts one"


@executions.command("list")
@click.option("--limit", default=20, show_default=True, help="How many, newest first.")
@click.option("--phase", multiple=True, help="Only these phases (repeatable).")
@click.option("--project", default=None)
@click.option("--domain", default=None)
@click.option("--workflow", default=None, help="Workflow name contains this.")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def list_executions(
    limit: int,
    phase: tuple[str, ...],
    project: str | None,
    domain: str | None,
    workflow: str | None,
    output_format: str,
) -> None:
    """Recent executions, newest first."""
    with user_errors():
        client = remote_client()
    if client is not None:
        with client, user_errors():
            found = client.executions(
                project=project, domain=domain, phases=phase, workflow=workflow, limit=limit
            )
            rows = [as_record(e) for e in found]
    else:
        # the metadata store alone: a listing needs neither the engine nor its backends
        from taskfabric.metadata import MetadataStore

        with user_errors():
            store = MetadataStore(state().config.metadata_url)
            try:
                rows = store.list_executions(
                    project=project,
                    domain=domain,
                    phases=[p.upper() for p in phase] or None,
                    workflow=workflow,
                    limit=limit,
                )
            finally:
                store.close()
    if output_format == "json":
        out.print_json(json.dumps([vars(r) for r in rows], default=str))
        return
    if not rows:
        err.print(_nothing_listed(project, domain, phase, workflow, remote=client is not None))
        return
    table = Table(box=None, header_style="bold")
    for col in ("ID", "WORKFLOW", "PHASE", "STARTED", "DURATION", "PROJECT/DOMAIN"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r.id,
            r.workflow_name,
            phase_text(r.phase),
            fmt_age(r.started_at),
            fmt_duration(elapsed(r.started_at, r.finished_at, r.phase)),
            f"{r.project}/{r.domain}",
        )
    out.print(table)


def _load_map(engine: Any, uri: str) -> types_pb2.LiteralMap | None:
    return engine.read_literals(uri)  # type: ignore[no-any-return]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _values(m: types_pb2.LiteralMap | None, limit: int = 70, order: list[str] | None = None) -> str:
    from taskfabric.types import literal_to_display

    if m is None:
        return ""
    names = [n for n in (order or []) if n in m.literals] or sorted(m.literals)
    return _clip(
        ", ".join(
            f"{k}={literal_to_display(m.literals[k], max_items=5, max_chars=60)}" for k in names
        ),
        limit,
    )


@executions.command("show")
@click.argument("execution")
@click.option("--all", "show_all", is_flag=True, help="List every map item too.")
@click.option("--events", is_flag=True, help="Also list every phase transition.")
@click.option("--no-values", is_flag=True, help="Do not read input and output values.")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def show(execution: str, show_all: bool, events: bool, no_values: bool, output_format: str) -> None:
    """One execution: its phase, inputs, outputs, and every node with attempts and errors."""
    with user_errors():
        client = remote_client()
    if client is not None:
        with client, user_errors():
            detail = client.execution(
                execution, values=not no_values, events=events, display=output_format == "text"
            )
        if output_format == "json":
            print_json(detail)
        else:
            print_detail(detail, show_all=show_all, no_values=no_values)
        return
    from taskfabric.metadata import NodeRecord

    with user_errors(), _engine() as engine:
        rec = engine.find_execution(execution)
        nodes = sorted(engine.metadata.nodes(rec.id), key=lambda n: node_sort_key(n.node_id))
        attempts = engine.metadata.attempts(rec.id)
        compiled = engine.load_compiled(rec)
        inputs = _load_map(engine, rec.inputs_uri)
        outputs = _load_map(engine, rec.outputs_uri)
        evts = engine.metadata.events(rec.id) if events else []
        by_node: dict[str, list[Any]] = {}
        for a in attempts:
            by_node.setdefault(a.node_id, []).append(a)
        recorded = {n.node_id for n in nodes}
        for node in compiled.primary.nodes:
            if node.id not in recorded:
                nodes.append(
                    NodeRecord(
                        rec.id,
                        node.id,
                        node.WhichOneof("target") or "task",
                        "NOT STARTED",
                        name=node.name,
                    )
                )
        nodes.sort(key=lambda n: node_sort_key(n.node_id))
        if output_format == "json":
            from taskfabric.types import literal_to_json

            payload = {
                "execution": vars(rec),
                "inputs": {k: literal_to_json(v) for k, v in inputs.literals.items()}
                if inputs
                else None,
                "outputs": {k: literal_to_json(v) for k, v in outputs.literals.items()}
                if outputs
                else None,
                "nodes": [
                    dict(vars(n), attempts_detail=[vars(a) for a in by_node.get(n.node_id, [])])
                    for n in nodes
                ],
                "events": [vars(e) for e in evts],
            }
            out.print_json(json.dumps(payload, default=str))
            return
        _print_show(
            engine,
            rec,
            nodes,
            by_node,
            inputs,
            outputs,
            evts,
            show_all,
            no_values,
            compiled.primary.interface,
        )


def _print_show(
    engine: Any,
    rec: Any,
    nodes: list[NodeRecord],
    by_node: dict[str, list[Any]],
    inputs: Any,
    outputs: Any,
    evts: list[Any],
    show_all: bool,
    no_values: bool,
    interface: Any,
) -> None:
    rec_inputs = [i.name for i in interface.inputs]
    rec_outputs = [o.name for o in interface.outputs]
    out.print(f"[bold]execution {rec.id}[/]  {phase_text(rec.phase)}")
    out.print(f"  workflow  {rec.workflow_name}")
    out.print(f"  project   {rec.project}/{rec.domain}   name {rec.name}")
    out.print(
        f"  started   {fmt_time(rec.started_at)}   duration "
        f"{fmt_duration(elapsed(rec.started_at, rec.finished_at, rec.phase))}"
    )
    if rec.owner:
        out.print(f"  owner     {rec.owner} (heartbeat {fmt_age(rec.heartbeat_at)})")
    from taskfabric.types import literal_to_display

    for label, values, order in (("inputs", inputs, rec_inputs), ("outputs", outputs, rec_outputs)):
        if values is None or not values.literals:
            continue
        out.print(f"  {label}")
        for k in [n for n in order if n in values.literals] or sorted(values.literals):
            text = literal_to_display(values.literals[k], max_items=8, max_chars=100)
            out.print(f"    {k} = {_clip(text, 150)}", markup=False)
    if rec.error:
        e = rec.error
        where = f" (node {e['node_id']})" if e.get("node_id") else ""
        out.print(
            f"  [red]error[/]     {e.get('code', '')}{where}: {e.get('message', '')}",
            highlight=False,
        )
    print_nodes(
        nodes,
        attempts_of=lambda n: by_node.get(n.node_id, []),
        values_of=lambda n: _values(_load_map(engine, n.outputs_uri), limit=80),
        show_all=show_all,
        no_values=no_values,
    )
    print_events(evts)


@executions.command("run")
@click.argument("execution")
@click.option(
    "--isolate-code",
    is_flag=True,
    help="Import none of the execution's code here, and run its tasks only on backends that "
    "isolate them (a multi-tenant server's workers).",
)
def run_queued(execution: str, isolate_code: bool) -> None:
    """Run a queued execution (or resume one whose engine died); used by worker pools.

    SIGTERM stops the engine without aborting the execution: it is left for the next
    engine to resume. Exit code 0: succeeded; 1: failed or aborted; 3: another engine owns it.
    """
    import signal

    from taskfabric.engine import Engine, EngineShutdown, ExecutionBusyError

    def stop(signum: int, frame: Any) -> None:
        raise EngineShutdown

    signal.signal(signal.SIGTERM, stop)
    engine = Engine(state().config, isolate_code=isolate_code)
    try:
        with user_errors():
            try:
                result = engine.resume(execution, runnable_only=True)
            except ExecutionBusyError as exc:
                err.print(f"skipped: {exc}")
                sys.exit(3)
    except EngineShutdown:
        err.print(f"stopped: execution {execution} will be resumed by the next engine")
        sys.exit(EXIT_ABORTED)
    finally:
        engine.close()
    err.print(f"execution {result.execution_id}: {result.phase}")
    if not result.succeeded:
        sys.exit(EXIT_FAILED)


@executions.command("work")
@click.option(
    "--slots",
    type=click.IntRange(min=1),
    default=8,
    show_default=True,
    help="Executions this process runs at once.",
)
@click.option(
    "--poll-seconds",
    type=click.FloatRange(min=0.05),
    default=0.5,
    show_default=True,
    help="Seconds between looks at the queue while it has a free slot.",
)
def work(slots: int, poll_seconds: float) -> None:
    """Run queued executions, many at once, until SIGTERM (a multi-tenant server's workers).

    Imports none of the executions' code (each attempt runs in a process of its own, on a
    backend that isolates it), so executions of every project and version share this
    process. SIGTERM leaves the running executions to be resumed by the next engine.
    """
    import signal

    from taskfabric.engine import ExecutionWorker

    worker = ExecutionWorker(state().config, slots=slots, poll_seconds=poll_seconds)
    signal.signal(signal.SIGTERM, lambda signum, frame: worker.stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: worker.stop.set())
    worker.run_forever()


@executions.command("resume")
@click.argument("execution")
@click.option(
    "--force", is_flag=True, help="Resume even if another process seems to own the execution."
)
def resume(execution: str, force: bool) -> None:
    """Continue an interrupted or failed execution; succeeded nodes are not run again."""
    from taskfabric.cli._progress import RunProgress
    from taskfabric.cli._run import _report

    engine = _engine()
    with user_errors():
        rec = engine.find_execution(execution)
    progress = RunProgress(err, rec.workflow_name.rsplit(".", 1)[-1])
    progress.execution_id = rec.id
    err.print(f"resuming execution [bold]{rec.id}[/] of {rec.workflow_name}")
    try:
        with user_errors(), sigterm_as_interrupt(), progress:
            result = engine.resume(rec.id, force=force, on_event=progress)
    except KeyboardInterrupt:
        err.print(f"[magenta]aborted[/]: execution {rec.id} was cancelled")
        engine.close()
        sys.exit(EXIT_ABORTED)
    try:
        _report(result, "text")
    finally:
        engine.close()
    if not result.succeeded:
        sys.exit(EXIT_FAILED)


@executions.command("cancel")
@click.argument("execution")
@click.option("--reason", default="cancelled by a user", show_default=True)
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def cancel(execution: str, reason: str, output_format: str) -> None:
    """Cancel an execution: a queued one at once, a running one within about a second."""
    from taskfabric.cli._remote import control

    with user_errors(), control() as plane:
        result = plane.cancel(execution, reason)
    if output_format == "json":
        print_json(result)
    elif result.phase in ("QUEUED", "RUNNING"):
        err.print(f"execution {result.id}: cancel requested; its engine aborts it shortly")
    else:
        err.print(f"execution {result.id}: {phase_text(result.phase)}")


@executions.command("relaunch")
@click.argument("execution")
@click.option("--name", default=None, help="The new execution's name (default: random).")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def relaunch(execution: str, name: str | None, output_format: str) -> None:
    """Launch the same workflow version again with the same inputs."""
    from taskfabric.cli._remote import control, print_launched

    with user_errors(), control() as plane:
        launched = plane.relaunch(execution, name)
    print_launched(launched, output_format, local=plane.local)


@executions.command("recover")
@click.argument("execution")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def recover(execution: str, output_format: str) -> None:
    """Queue a failed or aborted execution again: a worker resumes it, and its succeeded
    nodes keep their outputs instead of running again."""
    from taskfabric.cli._remote import control

    with user_errors(), control() as plane:
        result = plane.recover(execution)
    if output_format == "json":
        print_json(result)
        return
    err.print(
        f"execution [bold]{result.id}[/] is {phase_text(result.phase)} again: a worker resumes "
        "it, and its succeeded nodes are not run again"
    )
    if plane.local:
        err.print(f"  or resume it here: `taskfabric executions resume {result.id}`")


# `executions logs` lives in its own module.
from taskfabric.cli._logs import logs  # noqa: E402

executions.add_command(logs)
