"""The `taskfabric` command."""

from __future__ import annotations

from pathlib import Path

import click

from taskfabric._version import __version__
from taskfabric.cli._cache import cache
from taskfabric.cli._common import CliState
from taskfabric.cli._executions import executions
from taskfabric.cli._launch import launch
from taskfabric.cli._logs import logs
from taskfabric.cli._plugins import plugins
from taskfabric.cli._pools import pools
from taskfabric.cli._registry import entities, launchplans, register
from taskfabric.cli._run import run
from taskfabric.cli._server import server, tokens
from taskfabric.cli._ui import ui


class _Commands(click.Group):
    """The built-in commands, then those plugins add (`taskfabric_cli_commands`), which are
    loaded only when a name is not built in or the commands are listed (`--help`)."""

    def _plugin_commands(self) -> dict[str, click.Command]:
        from taskfabric.plugins import PluginError, get_plugins

        try:
            return get_plugins().cli_commands(taken=self.commands)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self._plugin_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        return self._plugin_commands().get(cmd_name)


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


cli.add_command(run)
cli.add_command(executions)
executions.add_command(logs)
cli.add_command(cache)
cli.add_command(plugins)
cli.add_command(register)
cli.add_command(launchplans)
cli.add_command(entities)
cli.add_command(pools)
cli.add_command(launch)
cli.add_command(server)
cli.add_command(tokens)
cli.add_command(ui)


def main() -> None:
    cli(prog_name="taskfabric")


__all__ = ["cli", "main"]
