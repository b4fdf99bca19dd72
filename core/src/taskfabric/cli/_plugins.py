"""`taskfabric plugins list | check`"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from taskfabric.cli._common import EXIT_FAILED, out, state, user_errors
from taskfabric.errors import TaskfabricError
from taskfabric.plugin_api import BACKENDS_GROUP, COMMANDS_GROUP, STORAGE_GROUP, Backend


@click.group()
def plugins() -> None:
    """Installed plugins and the backends the config selects."""


def _hook_names(pm: Any, plugin: Any) -> list[str]:
    return sorted(h.name for h in pm.get_hookcallers(plugin) or ())


def _collect() -> dict[str, Any]:
    from taskfabric.plugins import get_plugins

    config = state().config
    registry = get_plugins()
    registry.load()
    drivers = []
    for group in (BACKENDS_GROUP, STORAGE_GROUP, COMMANDS_GROUP):
        for info in registry.drivers(group):
            error = info.error
            if not error:
                try:
                    registry.driver(group, info.name)
                except Exception as exc:
                    error = str(exc)
            drivers.append(
                {
                    "group": group,
                    "name": info.name,
                    "distribution": info.distribution,
                    "version": info.version,
                    "requires_core": info.requires_core,
                    "builtin": info.builtin,
                    "state": "failed: " + error if error else "ok",
                }
            )
    hooks = []
    for info in registry.hook_infos:
        plugin = registry.pm.get_plugin(
            info.value if info.builtin else f"{info.distribution}:{info.name}"
        )
        hooks.append(
            {
                "name": info.name,
                "distribution": info.distribution,
                "version": info.version,
                "requires_core": info.requires_core,
                "builtin": info.builtin,
                "hooks": _hook_names(registry.pm, plugin) if plugin is not None else [],
                "state": "failed: " + info.error if info.error else "ok",
            }
        )
    task_types = []
    try:
        installed = registry.task_types()
    except Exception as exc:
        installed = {}
        hooks.append(
            {
                "name": "(task types)",
                "distribution": "",
                "version": "",
                "requires_core": "",
                "builtin": False,
                "hooks": [],
                "state": f"failed: {exc}",
            }
        )
    for name in sorted(set(installed) | set(config.task_types)):
        tt = installed.get(name)
        backend = config.task_types.get(name) or (tt.default_backend if tt else "")
        task_types.append(
            {
                "name": name,
                "installed": tt is not None,
                "provided_by": type(tt).__module__.split(".")[0] if tt else "",
                "config": tt.config_model.__name__ if tt and tt.config_model else "",
                "backend": backend,
                "driver": config.backend(backend).driver if backend else "",
                "selected_by": "config" if name in config.task_types else "default",
            }
        )
    return {
        "task_types": task_types,
        "drivers": drivers,
        "hooks": hooks,
        "config": str(config.source) if config.source else "(embedded defaults)",
    }


def _state(state: str) -> str:
    return "ok" if state == "ok" else f"[red]{escape(state)}[/]"


@plugins.command("list")
@click.option(
    "-o", "--output", "output_format", type=click.Choice(["text", "json"]), default="text"
)
def list_plugins(output_format: str) -> None:
    """Installed plugins: task types, drivers and hook modules, and what the config selects."""
    with user_errors():
        data = _collect()
    if output_format == "json":
        out.print_json(json.dumps(data))
        return
    out.print(f"[bold]config[/] {escape(data['config'])}")
    t = Table(title="task types", box=None, header_style="bold", title_justify="left")
    for col in ("TASK TYPE", "INSTALLED", "CONFIG", "BACKEND", "DRIVER", "SELECTED BY"):
        t.add_column(col)
    for row in data["task_types"]:
        t.add_row(
            escape(row["name"]),
            "yes" if row["installed"] else "[red]no[/]",
            escape(row["config"]),
            escape(row["backend"]),
            escape(row["driver"]),
            escape(row["selected_by"]),
        )
    out.print(t)
    t = Table(title="drivers", box=None, header_style="bold", title_justify="left")
    for col in ("GROUP", "NAME", "DISTRIBUTION", "VERSION", "CORE", "STATE"):
        t.add_column(col)
    for row in data["drivers"]:
        t.add_row(
            escape(row["group"]),
            escape(row["name"]),
            escape(row["distribution"]),
            escape(row["version"]),
            escape(row["requires_core"] or ("built in" if row["builtin"] else "any")),
            _state(row["state"]),
        )
    out.print(t)
    t = Table(title="hook modules", box=None, header_style="bold", title_justify="left")
    for col in ("NAME", "DISTRIBUTION", "VERSION", "CORE", "HOOKS", "STATE"):
        t.add_column(col)
    for row in data["hooks"]:
        t.add_row(
            escape(row["name"]),
            escape(row["distribution"]),
            escape(row["version"]),
            escape(row["requires_core"] or ("built in" if row["builtin"] else "any")),
            escape(", ".join(row["hooks"])),
            _state(row["state"]),
        )
    out.print(t)


@plugins.command("check")
@click.option("--project", default=None, help="Check with this project's overrides applied.")
def check(project: str | None) -> None:
    """Validate the config and every selected backend's settings; reach the blob store and
    each backend."""
    from taskfabric.config import validate_backend_options
    from taskfabric.engine import Engine
    from taskfabric.plugins import get_plugins

    problems = 0

    def report(ok: bool, what: str, detail: str) -> None:
        nonlocal problems
        problems += not ok
        mark = "[green]ok[/]  " if ok else "[red]FAIL[/]"
        # What a plugin or the config file says is text, not markup: `[backends.x]` stays.
        out.print(f"{mark} {escape(what)}: {escape(detail)}", highlight=False, soft_wrap=True)

    with user_errors():
        base = state().config
        config = base.for_project(project) if project else base
        registry = get_plugins()
        report(True, "config", str(base.source) if base.source else "(embedded defaults)")
        registry.load()
        for info in registry.hook_infos:
            if info.error:  # its task types and hooks are missing, whatever the config selects
                report(False, f"plugin {info.distribution} {info.version}", info.error)
        _check_commands(registry, report)
        engine = Engine(base)
    try:
        what = f"storage {base.blob_root} (driver {engine.store.scheme})"
        try:
            report(True, what, engine.store.check())
        except Exception as exc:
            report(False, what, str(exc))
        checked: set[str] = set()
        for task_type, backend_name in sorted(config.task_types.items()):
            try:
                registry.task_type(task_type)
                report(True, f"task type {task_type}", "installed")
            except Exception as exc:
                report(False, f"task type {task_type}", str(exc))
            if backend_name in checked:
                continue
            checked.add(backend_name)
            driver = config.backend(backend_name).driver
            what = f"backend {backend_name} (driver {driver})"
            try:
                cls = registry.driver(BACKENDS_GROUP, driver)
                validate_backend_options(config, backend_name, cls.settings_model)
            except Exception as exc:
                report(False, what, str(exc))
                continue
            try:
                backend: Backend[Any] = engine.backends.create(backend_name, config)
                result = backend.check()
                backend.close()
            except TaskfabricError as exc:
                # Our own errors say what, where and how to fix: no class name in front.
                report(False, what, str(exc))
                continue
            except Exception as exc:
                report(False, what, f"{type(exc).__name__}: {exc}")
                continue
            report(result.ok, what, result.message)
        # A backend table no task type selects is not reached, but its settings are checked:
        # a typo in its driver or a key must not pass silently until the day it is used.
        for backend_name in sorted(set(config.backends) - checked):
            driver = config.backend(backend_name).driver
            what = f"backend {backend_name} (driver {driver})"
            try:
                cls = registry.driver(BACKENDS_GROUP, driver)
                validate_backend_options(config, backend_name, cls.settings_model)
            except Exception as exc:
                report(False, what, str(exc))
                continue
            users = sorted(
                p for p, o in base.projects.items() if backend_name in o.task_types.values()
            )
            where = (
                f"selected by project {', '.join(users)} (check it with --project)"
                if users
                else f'no task type selects it ([task_types] python = "{backend_name}" would)'
            )
            report(True, what, f"settings valid, not reached: {where}")
    finally:
        engine.close()
    if problems:
        out.print(f"[red]{problems} problem(s)[/]")
        sys.exit(EXIT_FAILED)
    out.print("[green]all selected backends are ready[/]")


def _check_commands(registry: Any, report: Any) -> None:
    """Each command a plugin adds: it loads, is a click command, takes no built-in name and
    no other plugin's."""
    from taskfabric.cli import BUILTIN

    infos = registry.drivers(COMMANDS_GROUP)
    for info in infos:
        what = f"command {info.name} of {info.distribution} {info.version}"
        owners = [i.distribution for i in infos if i.name == info.name]
        if info.name in BUILTIN:
            report(False, what, "a built-in command has this name: the plugin must rename it")
        elif len(owners) > 1:
            report(
                False,
                what,
                f"also added by {' and '.join(sorted(set(owners) - {info.distribution}))}: "
                "uninstall one",
            )
        else:
            try:
                loaded = registry.driver(COMMANDS_GROUP, info.name)
            except Exception as exc:
                report(False, what, str(exc))
                continue
            ok = isinstance(loaded, click.Command)
            report(ok, what, "loads" if ok else f"{info.value} is {loaded!r}, not a click command")
