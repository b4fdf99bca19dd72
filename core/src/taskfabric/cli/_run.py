"""`taskfabric run FILE.py:WORKFLOW --input value ...`"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from taskfabric.cli._common import (
    EXIT_ABORTED,
    EXIT_FAILED,
    err,
    labelled,
    out,
    sigterm_as_interrupt,
    state,
    user_errors,
)
from taskfabric.cli._progress import RunProgress
from taskfabric.errors import CompilationError, TaskfabricError
from taskfabric.sdk import WorkflowDefinition
from taskfabric.types import literal_to_display, literal_to_json, parse_cli_value, type_str


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _input_options(wf: WorkflowDefinition[Any, Any]) -> list[click.Parameter]:
    opts: list[click.Parameter] = []
    for i, (name, param) in enumerate(wf.interface.inputs.items()):
        type_text = type_str(param.literal_type)
        if param.required:
            help_text = f"{type_text} (required)"
        else:
            default_lit = wf.interface.proto.inputs[i].default
            help_text = f"{type_text} (default: {literal_to_display(default_lit)})"
        decls = [_option_name(name)]
        if "_" in name:
            decls.append("--" + name)
        opts.append(
            click.Option(
                [*decls, name],
                type=str,
                required=False,
                default=None,
                help=help_text,
                metavar=type_text.upper()
                if param.literal_type.WhichOneof("type") == "simple"
                else "VALUE",
            )
        )
    return opts


def _parse_inputs(wf: WorkflowDefinition[Any, Any], raw: dict[str, str | None]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    missing = []
    for name, param in wf.interface.inputs.items():
        text = raw.get(name)
        if text is None:
            if param.required:
                missing.append(f"{_option_name(name)} ({type_str(param.literal_type)})")
            continue
        try:
            values[name] = parse_cli_value(text, param.py_type)
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(str(exc), param_hint=_option_name(name)) from None
    if missing:
        raise click.UsageError(f"workflow '{wf.short_name}' needs: {', '.join(missing)}")
    return values


@click.command(
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        # run's own options come before FILE.py:WORKFLOW; everything after it is the
        # workflow's inputs, so an input may be called --name or --project too.
        "allow_interspersed_args": False,
        "help_option_names": [],
    },
)
@click.argument("ref", metavar="FILE.py:WORKFLOW")
@click.option("--project", default=None, help="Project of the execution (config default).")
@click.option("--domain", default=None, help="Domain of the execution (config default).")
@click.option(
    "--cluster",
    default=None,
    help="Cluster label, for backends with several targets (default: the project's).",
)
@click.option("--name", "exec_name", default=None, help="Name of the execution (unique).")
@click.option(
    "-o",
    "--output",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    help="How to print the outputs.",
)
@click.option(
    "--overwrite-cache",
    is_flag=True,
    help="Run cached tasks again and replace their cache entries.",
)
@click.pass_context
def run(
    ctx: click.Context,
    ref: str,
    project: str | None,
    domain: str | None,
    exec_name: str | None,
    output_format: str,
    overwrite_cache: bool,
    cluster: str | None,
) -> None:
    """Compile and run a workflow; its inputs are options (see FILE.py:WORKFLOW --help)."""
    from taskfabric.engine import Engine, load_object

    args = list(ctx.args)
    want_help = "--help" in args or "-h" in args
    with user_errors():
        try:
            wf, code = load_object(ref)
        except TaskfabricError:
            raise
        except ModuleNotFoundError as exc:
            missing = (exc.name or "").split(".")[0]
            if missing.startswith("taskfabric_"):
                package = "taskfabric-" + missing.removeprefix("taskfabric_").replace("_", "-")
                raise TaskfabricError(
                    f"cannot load {ref}: it imports {missing}, which is not installed: "
                    f"`pip install {package}` provides it"
                ) from exc
            raise TaskfabricError(f"cannot load {ref}: {type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise TaskfabricError(f"cannot load {ref}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(wf, WorkflowDefinition):
            raise TaskfabricError(f"{ref} is {type(wf).__name__}, not a @workflow")
    command = click.Command(
        name=f"run {ref}",
        params=_input_options(wf),
        help=(wf.function.__doc__ or f"Run workflow {wf.short_name}.").strip()
        + "\n\nInputs are parsed by their declared types. Lists, dicts and records are JSON; "
        "files are local paths.",
        add_help_option=True,
    )
    if want_help:
        with click.Context(command, info_name=f"taskfabric run {ref}") as help_ctx:
            click.echo(command.get_help(help_ctx))
        ctx.exit(0)
    try:
        with click.Context(command, info_name=f"taskfabric run {ref}") as sub:
            command.parse_args(sub, args)
            inputs = _parse_inputs(wf, dict(sub.params))
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    cfg = state().config
    with user_errors():
        try:
            wf.compile()
        except (CompilationError, TypeError) as exc:
            # TypeError: a promise used as a plain value (e.g. in a Python `if`), explained
            err.print(labelled("error", str(exc)), highlight=False)
            sys.exit(2)
        engine = Engine(cfg)
    progress = RunProgress(err, wf.short_name)
    try:
        with user_errors(), sigterm_as_interrupt(), progress:
            result = engine.launch(
                wf,
                inputs,
                project=project,
                domain=domain,
                name=exec_name,
                code=code,
                on_event=progress,
                on_start=progress.started_execution,
                overwrite_cache=overwrite_cache,
                cluster=cluster,
            )
    except KeyboardInterrupt:
        err.print(
            f"[magenta]aborted[/]: execution {progress.execution_id} was cancelled; "
            f"`taskfabric executions resume {progress.execution_id}` continues it"
        )
        engine.close()
        sys.exit(EXIT_ABORTED)
    try:
        _report(result, output_format, list(wf.interface.outputs))
    finally:
        engine.close()


def _report(result: Any, output_format: str, order: list[str] | None = None) -> None:
    if output_format == "json":
        payload = {
            "execution_id": result.execution_id,
            "phase": result.phase,
            "outputs": {k: literal_to_json(v) for k, v in result.outputs.literals.items()}
            if result.outputs is not None
            else None,
            "error": result.error,
        }
        out.print_json(json.dumps(payload, default=str))
    elif result.succeeded:
        err.print(f"[green]succeeded[/]: execution [bold]{result.execution_id}[/]")
        assert result.outputs is not None
        names = [n for n in (order or []) if n in result.outputs.literals]
        for name in names or sorted(result.outputs.literals):
            out.print(f"{name} = {literal_to_display(result.outputs.literals[name])}", markup=False)
    else:
        e = result.error or {}
        node = f" in node {e['node_id']}" if e.get("node_id") else ""
        err.print(
            labelled(
                result.phase.lower(),
                f"execution {result.execution_id}{node}: {e.get('code', '')}: "
                f"{e.get('message', '')}",
            ),
            highlight=False,
        )
        if e.get("traceback"):
            err.print(e["traceback"].rstrip(), markup=False, highlight=False)
        err.print(f"details: taskfabric executions show {result.execution_id}", style="dim")
    if not result.succeeded:
        sys.exit(EXIT_ABORTED if result.phase == "ABORTED" else EXIT_FAILED)
