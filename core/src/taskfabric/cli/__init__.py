"""The `taskfabric` command."""

from __future__ import annotations

import importlib
from pathlib import Path

import click

from taskfabric._version import __version__
from taskfabric.cli._common import CliState

#: The built-in commands: name -> (module, attribute, the first paragraph of its help). A
#: command's module is imported only when the command runs or its own help is asked for, so
#: `taskfabric --help` loads none of them (tests/cli/test_cli_startup.py keeps these
#: paragraphs equal to the commands' own).
BUILTIN: dict[str, tuple[str, str, str]] = {
    "cache": ("taskfabric.cli._cache", "cache", "The data catalog: cached task results."),
    "entities": (
        "taskfabric.cli._registry",
        "entities",
        "Registered tasks, workflows and launch plans.",
    ),
    "executions": ("taskfabric.cli._executions", "executions", "Inspect and resume executions."),
    "launch": (
        "taskfabric.cli._launch",
        "launch",
        (
            "Launch a registered WORKFLOW (or --launch-plan NAME) with --input NAME=VALUE "
            "options, parsed by the declared types as `taskfabric run` parses them."
        ),
    ),
    "launchplans": (
        "taskfabric.cli._registry",
        "launchplans",
        "Launch plans: list them, activate or deactivate a version.",
    ),
    "plugins": (
        "taskfabric.cli._plugins",
        "plugins",
        "Installed plugins and the backends the config selects.",
    ),
    "pools": (
        "taskfabric.cli._pools",
        "pools",
        ("Resource pools: capacity, rate, holders and waiters (alone: the same as `pools list`)."),
    ),
    "register": (
        "taskfabric.cli._registry",
        "register",
        (
            "Register the tasks, workflows and launch plans under PATH (a folder, a package "
            "or a .py file) as VERSION, with a bundle of its source tree."
        ),
    ),
    "run": (
        "taskfabric.cli._run",
        "run",
        ("Compile and run a workflow: `taskfabric run [OPTIONS] FILE.py:WORKFLOW [INPUTS]`."),
    ),
    "server": (
        "taskfabric.cli._server",
        "server",
        (
            "Run the control plane: the HTTP API (/api/v1, /docs, /openapi.json), the "
            "scheduler and engine workers, on this config's database and blob store."
        ),
    ),
    "tokens": (
        "taskfabric.cli._server",
        "tokens",
        "API tokens of the server: each has one role over some projects.",
    ),
    "ui": (
        "taskfabric.cli._ui",
        "ui",
        (
            "Serve the web console for the embedded store (this config's database and blob "
            "store), on 127.0.0.1 only, until Ctrl-C."
        ),
    ),
}


class _Commands(click.Group):
    """The built-in commands (imported on first use), then those plugins add
    (`taskfabric_cli_commands`), which are loaded only when a name is not built in or the
    commands are listed (`--help`)."""

    def _plugin_commands(self) -> dict[str, click.Command]:
        from taskfabric.plugins import PluginError, get_plugins

        try:
            return get_plugins().cli_commands(taken=[*self.commands, *BUILTIN])
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *BUILTIN, *self._plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        if cmd_name in BUILTIN:
            module, attribute, _ = BUILTIN[cmd_name]
            loaded = getattr(importlib.import_module(module), attribute)
            self.add_command(loaded, cmd_name)
            return loaded  # type: ignore[no-any-return]
        return self._plugin_commands().get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`, from BUILTIN's paragraphs for the commands not
        loaded (the same text click would show)."""
        plugin = self._plugin_commands()
        names = sorted({*self.commands, *BUILTIN, *plugin})
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or plugin.get(name)
            if command is None:
                command = click.Command(name, help=BUILTIN[name][2])
            if command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="taskfabric")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Config file (default: $TASKFABRIC_CONFIG, ./taskfabric.toml, then the user config file).",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Overrides [logging] level.",
)
@click.option(
    "--log-format",
    type=click.Choice(["console", "json"]),
    default=None,
    help="Overrides [logging] format.",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: Path | None, log_level: str | None, log_format: str | None
) -> None:
    """taskfabric: typed, durable workflows."""
    ctx.obj = CliState(config_path, log_level, log_format)


def main() -> None:
    cli(prog_name="taskfabric")


__all__ = ["cli", "main"]
