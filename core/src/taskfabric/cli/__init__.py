"""The `taskfabric` command."""

from __future__ import annotations

import importlib
import importlib.metadata as md
from pathlib import Path

import click

from taskfabric._entrypoints import COMMANDS_GROUP
from taskfabric._version import __version__
from taskfabric.cli._state import CliState

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


def _plugin_entry_points() -> dict[str, list[md.EntryPoint]]:
    """Name -> the installed entry points of the `taskfabric.commands` group with that name
    (read from the distributions' metadata: nothing is imported)."""
    found: dict[str, list[md.EntryPoint]] = {}
    for ep in md.entry_points(group=COMMANDS_GROUP):
        found.setdefault(ep.name, []).append(ep)
    return found


def _provider(ep: md.EntryPoint) -> str:
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist is not None else ep.value


class _Commands(click.Group):
    """The built-in commands (imported on first use), then those plugins add as entry points
    of the `taskfabric.commands` group: listed from the metadata, and a plugin's command
    module imported only when it runs or `--help` shows its help line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *BUILTIN, *_plugin_entry_points()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = self.commands.get(cmd_name)
        if command is not None:
            return command
        if cmd_name in BUILTIN:
            module, attribute, _ = BUILTIN[cmd_name]
            loaded = getattr(importlib.import_module(module), attribute)
            self.add_command(loaded, cmd_name)
            return loaded  # type: ignore[no-any-return]
        found = _plugin_entry_points().get(cmd_name)
        if not found:
            return None
        return self._load_plugin_command(cmd_name, found)

    @staticmethod
    def _load_plugin_command(name: str, found: list[md.EntryPoint]) -> click.Command:
        """A plugin's command, loaded through the plugin system (core version check, an
        import error summed up with the plugin's own lines); every refusal says how to fix
        it."""
        from taskfabric.plugins import PluginError, get_plugins

        if len(found) > 1:
            owners = " and ".join(sorted(_provider(ep) for ep in found))
            raise click.ClickException(
                f"the command '{name}' is added by both {owners}: uninstall one"
            )
        try:
            loaded: object = get_plugins().driver(COMMANDS_GROUP, name)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc
        if not isinstance(loaded, click.Command):
            raise click.ClickException(
                f"{_provider(found[0])} declares the command '{name}' as {found[0].value}, "
                f"which is {loaded!r}, not a click command: point the entry point of the "
                f"{COMMANDS_GROUP} group at a click command or group"
            )
        return loaded

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of `--help`: built-in commands from BUILTIN's paragraphs (the
        same text click would show), plugins' commands from their own modules, which must
        import little. A plugin command that does not load or clashes is listed with what
        is wrong; running it says more."""
        plugin = _plugin_entry_points()
        names = sorted({*self.commands, *BUILTIN, *plugin})
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if name in BUILTIN and plugin.get(name):
                owners = ", ".join(_provider(ep) for ep in plugin[name])
                rows.append((name, f"{BUILTIN[name][2]} (also claimed by {owners})"))
                continue
            if command is None and name in BUILTIN:
                command = click.Command(name, help=BUILTIN[name][2])
            elif command is None:
                command = self._help_only(name, plugin[name])
            if command.hidden:
                continue
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    @staticmethod
    def _help_only(name: str, found: list[md.EntryPoint]) -> click.Command:
        """What `--help` shows for a plugin command, without the plugin system."""
        if len(found) > 1:
            owners = " and ".join(sorted(_provider(ep) for ep in found))
            return click.Command(name, help=f"(added by both {owners}: uninstall one)")
        try:
            loaded = found[0].load()
        except Exception as exc:  # shown in the list; running the command explains it fully
            return click.Command(
                name,
                help=f"({_provider(found[0])}: failed to load, {type(exc).__name__}; "
                f"run `taskfabric {name}` for the details)",
            )
        if isinstance(loaded, click.Command):
            return loaded
        return click.Command(name, help=f"({_provider(found[0])}: not a click command)")


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
    """The `taskfabric` command. Once a command is done, the process ends without the
    interpreter's teardown (`_exit.exit_now`: threads, `atexit` handlers and open files
    first)."""
    try:
        cli(prog_name="taskfabric")
    except SystemExit as done:
        from taskfabric.cli._exit import exit_now

        exit_now(done.code)


__all__ = ["cli", "main"]
