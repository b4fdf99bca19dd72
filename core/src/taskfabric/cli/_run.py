"""`taskfabric run FILE.py:WORKFLOW --input value ...`"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any, TextIO

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
from taskfabric.sdk import TaskDefinition, WorkflowDefinition
from taskfabric.types import literal_to_display, literal_to_json, parse_cli_value, type_str


def _option_name(name: str) -> str:
    return "--" + name.replace("_", "-")


class _InputOption(click.Option):
    """An option that is one of the workflow's inputs."""


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
            _InputOption(
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


def _run_options(prefix: str = "") -> list[click.Parameter]:
    """run's own options; with `prefix`, their parameter names carry it (so that they can sit
    next to the workflow's inputs in one command)."""
    return [
        click.Option(
            ["--project", prefix + "project"],
            default=None,
            help="Project of the execution (config default).",
        ),
        click.Option(
            ["--domain", prefix + "domain"],
            default=None,
            help="Domain of the execution (config default).",
        ),
        click.Option(
            ["--cluster", prefix + "cluster"],
            default=None,
            help="Cluster label, for backends with several targets (default: the project's).",
        ),
        click.Option(
            ["--name", prefix + "exec_name"],
            default=None,
            help="Name of the execution (unique in its project and domain).",
        ),
        click.Option(
            ["-o", "--output", prefix + "output_format"],
            type=click.Choice(["text", "json"]),
            default=None,
            help="How to print the outputs (default text); with json, stdout carries only "
            "the JSON document.",
        ),
        click.Option(
            ["--overwrite-cache", prefix + "overwrite_cache"],
            is_flag=True,
            default=None,
            help="Run cached tasks again and replace their cache entries.",
        ),
    ]


_OWN = "run__"
_HELP = ("-h", "--help")


class _WorkflowCommand(click.Command):
    """A workflow's inputs and run's own options in one command, listed apart in --help."""

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Inputs": [], "Run options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                own = not isinstance(param, _InputOption)
                sections["Run options" if own else "Inputs"].append(record)
        for title, records in sections.items():
            if records:
                with formatter.section(title):
                    formatter.write_dl(records)


def _workflow_command(wf: WorkflowDefinition[Any, Any], ref: str) -> click.Command:
    inputs = _input_options(wf)
    taken = {opt for p in inputs for opt in getattr(p, "opts", [])}
    # An input may be called --name or --output: then it is the input, and run's own option
    # of that name goes before the workflow reference.
    own = [p for p in _run_options(_OWN) if not taken & set(getattr(p, "opts", []))]
    shadowed = sorted(
        o
        for p in _run_options(_OWN)
        for o in getattr(p, "opts", [])
        if o.startswith("--")
        if o in taken
    )
    note = (
        f" This workflow has inputs named {', '.join(shadowed)}: after FILE.py:WORKFLOW they "
        "are the inputs; run's own options of those names go before it."
        if shadowed
        else ""
    )
    return _WorkflowCommand(
        name=f"run {ref}",
        params=inputs + own,
        help=(wf.function.__doc__ or f"Run workflow {wf.short_name}.").strip()
        + "\n\nInputs are parsed by their declared types. Lists, dicts and records are JSON; "
        "files are local paths. Run options may come before or after FILE.py:WORKFLOW." + note,
        context_settings={"help_option_names": list(_HELP)},
    )


@click.command(
    params=[*_run_options(), click.Argument(["ref"], metavar="FILE.py:WORKFLOW", required=False)],
    context_settings={
        "ignore_unknown_options": True,
        "allow_extra_args": True,
        # What follows FILE.py:WORKFLOW is parsed once the workflow, and so its inputs, are
        # known: its inputs and run's own options, in any order.
        "allow_interspersed_args": False,
        "help_option_names": [],
    },
    epilog="FILE.py:WORKFLOW --help lists the workflow's inputs with their types and defaults.",
)
@click.pass_context
def run(
    ctx: click.Context,
    ref: str | None,
    project: str | None,
    domain: str | None,
    exec_name: str | None,
    output_format: str | None,
    overwrite_cache: bool | None,
    cluster: str | None,
) -> None:
    """Compile and run a workflow: `taskfabric run [OPTIONS] FILE.py:WORKFLOW [INPUTS]`.

    The workflow's inputs are options (`--n 3`); run's options below may also come after
    the workflow reference."""
    from taskfabric.engine import Engine

    args = list(ctx.args)
    if ref is None:
        raise click.UsageError("missing FILE.py:WORKFLOW (`taskfabric run --help` says more)")
    if ref in _HELP:
        click.echo(ctx.get_help())
        ctx.exit(0)
    with user_errors():
        cfg = state().config  # a bad config file is `config error: file:line: ...`, exit 2
        wf, code = _load_workflow(ref)
    command = _workflow_command(wf, ref)
    if any(a in _HELP for a in args):
        with click.Context(
            command, info_name=f"taskfabric run {ref}", help_option_names=list(_HELP)
        ) as help_ctx:
            click.echo(command.get_help(help_ctx))
        ctx.exit(0)
    try:
        with click.Context(command, info_name=f"taskfabric run {ref}") as sub:
            command.parse_args(sub, args)
            given = dict(sub.params)
            inputs = _parse_inputs(wf, given)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    # run's options after the reference win over the same ones before it
    later = {k.removeprefix(_OWN): v for k, v in given.items() if k.startswith(_OWN)}
    project = later.get("project") or project
    domain = later.get("domain") or domain
    cluster = later.get("cluster") or cluster
    exec_name = later.get("exec_name") or exec_name
    output_format = later.get("output_format") or output_format or "text"
    overwrite_cache = bool(later.get("overwrite_cache") or overwrite_cache)
    with user_errors():
        try:
            wf.compile()
        except CompilationError as exc:
            err.print(labelled("error", str(exc)), highlight=False)
            sys.exit(2)
        except Exception as exc:
            # The workflow's body raised while it was being compiled (a promise used as a
            # plain value, which says so, or any bug of its own): where, in the user's files.
            message = f"workflow '{wf.short_name}' cannot be compiled: its body raised\n"
            message += _where(exc)
            if "'Promise'" in str(exc):  # Python's own message about an operator or a call
                message += (
                    "\n(a workflow input or a task's output is a Promise while the workflow "
                    "is compiled: it has no value yet. Compute with it inside a @task that "
                    "takes it as an input.)"
                )
            err.print(labelled("error", message), highlight=False)
            sys.exit(2)
        engine = Engine(cfg)
    progress = RunProgress(err, wf.short_name)
    try:
        with (
            user_errors(),
            sigterm_as_interrupt(),
            progress,
            _stdout_to_stderr(output_format == "json") as document_out,
        ):
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
            progress.finish(result.phase)
            if output_format == "json":
                document_out.write(_json_document(result) + "\n")
                document_out.flush()
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


def _load_workflow(ref: str) -> tuple[WorkflowDefinition[Any, Any], dict[str, str]]:
    """The workflow `ref` names; an error that says where loading it failed."""
    from taskfabric.engine import load_object

    try:
        wf, code = load_object(ref)
    except TaskfabricError:
        raise
    except ModuleNotFoundError as exc:
        from taskfabric.plugins import KNOWN_PROVIDERS

        missing = (exc.name or "").split(".")[0]
        package = "taskfabric-" + missing.removeprefix("taskfabric_").replace("_", "-")
        # a hint only for a distribution that exists (the plugins of this repository)
        if missing.startswith("taskfabric_") and package in KNOWN_PROVIDERS.values():
            raise TaskfabricError(
                f"cannot load {ref}: it imports {missing}, which is not installed: "
                f"`pip install {package}` provides it\n{_where(exc)}"
            ) from exc
        raise TaskfabricError(f"cannot load {ref}:\n{_where(exc)}") from exc
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise TaskfabricError(f"cannot load {ref}:\n{_where(exc)}") from exc
    if isinstance(wf, TaskDefinition):
        raise TaskfabricError(
            f"{ref} is a @task; `taskfabric run` runs a @workflow: call the task from one "
            f"(`@workflow def main(...) -> ...: return {wf.short_name}(...)`) and run that"
        )
    if not isinstance(wf, WorkflowDefinition):
        raise TaskfabricError(f"{ref} is {type(wf).__name__}, not a @workflow")
    return wf, code


_IMPORT_MACHINERY = (
    str(Path(__file__).resolve().parents[1]) + os.sep,  # taskfabric itself
    "<frozen importlib",
)


def _where(exc: BaseException) -> str:
    """The exception with the traceback of the user's files that raised it (a SyntaxError
    with its file, line and the line itself)."""
    frames = [
        f
        for f in traceback.extract_tb(exc.__traceback__)
        if not f.filename.startswith(_IMPORT_MACHINERY)
    ]
    lines = traceback.format_list(frames) + traceback.format_exception_only(exc)
    if frames:
        lines.insert(0, "Traceback (most recent call last):\n")
    return "".join(lines).rstrip()


@contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[TextIO]:
    """With `enabled`, everything written to stdout while the block runs (a task's print, a
    library, a child process inheriting file descriptor 1) goes to stderr instead; yields
    the real stdout, for the JSON document."""
    if not enabled:
        yield sys.stdout
        return
    sys.stdout.flush()
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test runner's)
        fd = -1
    if fd < 0:
        real = sys.stdout
        with redirect_stdout(sys.stderr):
            yield real
        return
    saved = os.dup(fd)
    try:
        os.dup2(sys.stderr.fileno(), fd)
        with os.fdopen(os.dup(saved), "w", encoding="utf-8", closefd=True) as real:
            yield real
    finally:
        sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


def _json_document(result: Any) -> str:
    payload = {
        "execution_id": result.execution_id,
        "phase": result.phase,
        "outputs": {k: literal_to_json(v) for k, v in result.outputs.literals.items()}
        if result.outputs is not None
        else None,
        "error": result.error,
    }
    return json.dumps(payload, default=str, indent=2)


def _report(result: Any, output_format: str, order: list[str] | None = None) -> None:
    if output_format == "json":
        pass  # the document is written by `run`, before anything else can reach stdout
    elif result.succeeded:
        err.print(f"[green]succeeded[/]: execution [bold]{result.execution_id}[/]")
        assert result.outputs is not None
        names = [n for n in (order or []) if n in result.outputs.literals]
        for name in names or sorted(result.outputs.literals):
            lit = result.outputs.literals[name]
            if out.is_terminal:
                out.print(f"{name} = {literal_to_display(lit)}", markup=False)
            else:  # piped: the whole value, on one line, for tools and logs
                text = literal_to_display(lit, max_items=sys.maxsize, max_chars=sys.maxsize)
                sys.stdout.write(f"{name} = {text}\n")
        sys.stdout.flush()
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
