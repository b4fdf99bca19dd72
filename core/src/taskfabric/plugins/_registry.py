"""Finding and loading plugins: entry points for drivers (one per name), pluggy for hooks."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata as md
import sys
import sysconfig
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy
from packaging.requirements import Requirement
from packaging.version import Version

from taskfabric import hookspecs
from taskfabric._version import __version__
from taskfabric.errors import TaskfabricError
from taskfabric.plugin_api import BACKENDS_GROUP, HOOKS_GROUP, STORAGE_GROUP, TaskType

#: The core's own hook modules, registered like any plugin's (pytest's default_plugins).
DEFAULT_PLUGINS: tuple[str, ...] = ("taskfabric.plugins._python",)

#: The core's own drivers: (group, name, "module:attribute"), loaded like entry points.
BUILTIN_DRIVERS: tuple[tuple[str, str, str], ...] = (
    (BACKENDS_GROUP, "local", "taskfabric.backends._local:LocalBackend"),
    (BACKENDS_GROUP, "subprocess", "taskfabric.backends._subprocess:SubprocessBackend"),
    (BACKENDS_GROUP, "sandbox", "taskfabric.backends._sandbox:SandboxBackend"),
    (STORAGE_GROUP, "file", "taskfabric.storage._local:LocalBlobStore"),
)

#: Which distribution provides a driver or task type that is not installed: exactly what the
#: plugins in this repository provide (tests/plugins/test_providers.py derives it from their
#: entry points and task types and fails on any difference), so a hint never names a
#: distribution that does not exist.
KNOWN_PROVIDERS: dict[str, str] = {
    "aws-batch": "taskfabric-aws",
    "docker": "taskfabric-containers",
    "flink": "taskfabric-flink",
    "flink-cluster": "taskfabric-flink",
    "flink-local": "taskfabric-flink",
    "http": "taskfabric-http",
    "http-job": "taskfabric-http",
    "kubernetes": "taskfabric-kubernetes",
    "podman": "taskfabric-containers",
    "s3": "taskfabric-aws",
    "shell": "taskfabric-shell",
    "spark": "taskfabric-spark",
    "spark-local": "taskfabric-spark",
    "spark-submit": "taskfabric-spark",
}


class PluginError(TaskfabricError):
    """A plugin could not be found, loaded or used."""


@dataclass
class PluginInfo:
    """One entry point (or built-in) of a plugin, and whether it loaded."""

    group: str
    name: str
    value: str
    distribution: str
    version: str
    builtin: bool = False
    error: str = ""
    requires_core: str = ""


_STDLIB = Path(sysconfig.get_paths()["stdlib"]).resolve()
_THIS_FILE = Path(__file__).resolve()


def _is_loader_frame(filename: str) -> bool:
    """A frame of the import machinery (importlib, this module), not of the plugin's code."""
    if filename.startswith("<"):
        return True  # <frozen importlib._bootstrap> and the like
    path = Path(filename).resolve()
    if path == _THIS_FILE:
        return True
    in_packages = any(p in ("site-packages", "dist-packages") for p in path.parts)
    return path.is_relative_to(_STDLIB) and not in_packages


def _import_name(filename: str) -> str:
    """`pkg/module.py` for a file under an import root, else the path as it is."""
    path = Path(filename).resolve()
    roots = [Path(p or ".").resolve() for p in sys.path]
    under = [r for r in roots if path.is_relative_to(r)]
    return str(path.relative_to(max(under, key=lambda r: len(r.parts)))) if under else filename


def _summary(exc: BaseException) -> str:
    """The error and where in the plugin's own code it was raised (innermost first): the
    import machinery's frames say nothing about which plugin line is wrong."""
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if not _is_loader_frame(f.filename)
    ][-3:]
    where = " <- ".join(f"{_import_name(f.filename)}:{f.lineno}" for f in reversed(frames))
    return f"{type(exc).__name__}: {exc}" + (f" (at {where})" if where else "")


def _core_requirement(dist: md.Distribution | None) -> str:
    if dist is None:
        return ""
    for text in dist.requires or ():
        try:
            req = Requirement(text)
        except Exception:
            continue
        if req.name.lower().replace("_", "-") == "taskfabric" and not req.marker:
            return str(req.specifier)
    return ""


def _check_core(info: PluginInfo) -> None:
    if info.builtin or not info.requires_core:
        return
    from packaging.specifiers import SpecifierSet

    if not SpecifierSet(info.requires_core).contains(Version(__version__), prereleases=True):
        raise PluginError(
            f"plugin {info.distribution} {info.version} supports taskfabric "
            f"{info.requires_core}, but taskfabric {__version__} is installed: install a "
            f"version of {info.distribution} made for taskfabric {__version__} (or a core "
            "it supports)"
        )


class Plugins:
    """The plugins of this process: hook modules (pluggy) and drivers (entry points).

    `Plugins(autoload=False)` loads only the core's built-ins; tests register what they need
    with `register` / `add_driver`.
    """

    def __init__(self, *, autoload: bool = True) -> None:
        self.autoload = autoload
        self.pm = pluggy.PluginManager("taskfabric")
        self.pm.add_hookspecs(hookspecs)
        self._loaded = False
        self._lock = threading.RLock()
        self.hook_infos: list[PluginInfo] = []
        self._extra_drivers: dict[tuple[str, str], tuple[type[Any], PluginInfo]] = {}
        self._driver_cache: dict[tuple[str, str], type[Any]] = {}
        self._driver_errors: dict[tuple[str, str], PluginInfo] = {}
        self._task_types: dict[str, TaskType] | None = None
        self._events_wanted: bool | None = None

    # -- hooks ------------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        self.load()
        return self.pm.hook

    def load(self) -> None:
        """Register the built-in hook modules and, with autoload, every installed one."""
        with self._lock:
            if self._loaded:
                return
            for module_name in DEFAULT_PLUGINS:
                module = importlib.import_module(module_name)
                self.pm.register(module, name=module_name)
                self.hook_infos.append(
                    PluginInfo(
                        HOOKS_GROUP,
                        module_name,
                        module_name,
                        "taskfabric",
                        __version__,
                        builtin=True,
                    )
                )
            if self.autoload:
                for ep in md.entry_points(group=HOOKS_GROUP):
                    self._load_hook_entry_point(ep)
            self._loaded = True

    def _load_hook_entry_point(self, ep: md.EntryPoint) -> None:
        dist = ep.dist
        info = PluginInfo(
            HOOKS_GROUP,
            ep.name,
            ep.value,
            dist.name if dist else "?",
            dist.version if dist else "?",
            requires_core=_core_requirement(dist),
        )
        self.hook_infos.append(info)
        try:
            _check_core(info)
            module = ep.load()
            name = f"{info.distribution}:{ep.name}"
            self.pm.register(module, name=name)
            self._check_pending(name)
        except Exception as exc:
            info.error = (
                str(exc)
                if isinstance(exc, PluginError)
                else f"entry point {ep.name} = {ep.value} failed to import: {_summary(exc)}"
            )

    def register(self, plugin: ModuleType | object, name: str | None = None) -> str:
        """Register a hook module or object (tests, embedding applications)."""
        self.load()
        registered = str(self.pm.register(plugin, name=name))
        self._check_pending(registered)
        self._task_types = None
        self._events_wanted = None
        return registered

    def _check_pending(self, name: str) -> None:
        """A misspelt or retired hook name fails loudly, naming it; the plugin is dropped."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            if "taskfabric_cli_commands" in str(exc):
                raise PluginError(
                    f"plugin {name} implements taskfabric_cli_commands, which taskfabric no "
                    "longer calls: declare each command as an entry point of the "
                    '`taskfabric.commands` group instead (name = "module:command", see '
                    "docs/plugins/writing.md)"
                ) from exc
            raise

    def unregister(self, name: str) -> None:
        self.pm.unregister(name=name)
        self._task_types = None
        self._events_wanted = None

    @property
    def wants_events(self) -> bool:
        """Whether any plugin listens to lifecycle events (else the engine skips the calls)."""
        if self._events_wanted is None:
            hook = self.hook
            self._events_wanted = any(
                getattr(hook, name).get_hookimpls()
                for name in (
                    "taskfabric_node_event",
                    "taskfabric_execution_started",
                    "taskfabric_execution_finished",
                )
            )
        return self._events_wanted

    # -- task types -------------------------------------------------------------------

    def task_types(self) -> dict[str, TaskType]:
        if self._task_types is None:
            with self._lock:
                found: dict[str, tuple[TaskType, str]] = {}
                for impl in self.hook.taskfabric_task_types.get_hookimpls():
                    for tt in impl.function():
                        if not isinstance(tt, TaskType):
                            raise PluginError(
                                f"plugin {impl.plugin_name} returned {tt!r} from "
                                "taskfabric_task_types: return TaskType instances"
                            )
                        if tt.name in found:
                            raise PluginError(
                                f"task type '{tt.name}' is added by both "
                                f"{found[tt.name][1]} and {impl.plugin_name}: uninstall one"
                            )
                        found[tt.name] = (tt, impl.plugin_name)
                self._task_types = {name: tt for name, (tt, _) in found.items()}
        return self._task_types

    def task_type(self, name: str) -> TaskType:
        types = self.task_types()
        if name in types:
            return types[name]
        hint = ""
        if name in KNOWN_PROVIDERS:
            hint = f"; `pip install {KNOWN_PROVIDERS[name]}` provides it"
        broken = [i for i in self.hook_infos if i.error]
        if broken:
            hint += "; plugins that failed to load: " + "; ".join(
                f"{i.distribution} ({i.error})" for i in broken
            )
        raise PluginError(
            f"unknown task type '{name}': installed task types are {', '.join(sorted(types))}{hint}"
        )

    def load_type_transformers(self, engine: Any) -> None:
        """Register every plugin's type transformers in `engine` (see TypeEngine.set_fallback)."""
        for batch in self.hook.taskfabric_type_transformers():
            for transformer in batch:
                engine.register(transformer)

    # -- drivers ----------------------------------------------------------------------

    def add_driver(self, group: str, name: str, cls: type[Any]) -> None:
        """Make a driver available without an entry point (tests, embedding)."""
        info = PluginInfo(
            group, name, f"{cls.__module__}:{cls.__qualname__}", "(registered)", "", builtin=False
        )
        self._extra_drivers[(group, name)] = (cls, info)
        self._driver_cache.pop((group, name), None)

    def remove_driver(self, group: str, name: str) -> None:
        self._extra_drivers.pop((group, name), None)
        self._driver_cache.pop((group, name), None)

    def drivers(self, group: str) -> list[PluginInfo]:
        """Every driver of `group`: built-ins, registered ones and installed entry points."""
        infos = [
            PluginInfo(g, n, v, "taskfabric", __version__, builtin=True)
            for g, n, v in BUILTIN_DRIVERS
            if g == group
        ]
        infos += [info for (g, _), (_, info) in self._extra_drivers.items() if g == group]
        if self.autoload:
            for ep in md.entry_points(group=group):
                dist = ep.dist
                infos.append(
                    PluginInfo(
                        group,
                        ep.name,
                        ep.value,
                        dist.name if dist else "?",
                        dist.version if dist else "?",
                        requires_core=_core_requirement(dist),
                    )
                )
        for info in infos:
            failed = self._driver_errors.get((group, info.name))
            if failed is not None:
                info.error = failed.error
        return infos

    def driver(self, group: str, name: str) -> type[Any]:
        """The driver class called `name` in `group`, loaded on first use."""
        key = (group, name)
        cached = self._driver_cache.get(key)
        if cached is not None:
            return cached
        if key in self._extra_drivers:
            cls = self._extra_drivers[key][0]
        else:
            cls = self._load_driver(group, name)
        self._driver_cache[key] = cls
        return cls

    def _load_driver(self, group: str, name: str) -> type[Any]:
        for g, n, value in BUILTIN_DRIVERS:
            if (g, n) == (group, name):
                module_name, _, attr = value.partition(":")
                loaded: type[Any] = getattr(importlib.import_module(module_name), attr)
                return loaded
        candidates = [i for i in self.drivers(group) if i.name == name and not i.builtin]
        if not candidates:
            known = ", ".join(sorted({i.name for i in self.drivers(group)}))
            hint = (
                f"; `pip install {KNOWN_PROVIDERS[name]}` provides it"
                if name in KNOWN_PROVIDERS
                else ""
            )
            role = "blob store" if group == STORAGE_GROUP else group.rsplit(".", 1)[-1][:-1]
            raise PluginError(
                f"unknown {role} driver '{name}': installed drivers are {known}{hint}"
            )
        if len(candidates) > 1:
            owners = " and ".join(sorted(c.distribution for c in candidates))
            raise PluginError(
                f"driver '{name}' of {group} is provided by both {owners}: uninstall one"
            )
        info = candidates[0]
        try:
            _check_core(info)
            # importlib.metadata, not stevedore: stevedore caches its entry-point scan per
            # sys.path for the life of the process and cannot say which distribution provides
            # a name; both must be exact here (plugins installed while a server runs, two
            # distributions claiming one name).
            cls: type[Any] = md.EntryPoint(name, info.value, group).load()
        except PluginError as exc:
            info.error = str(exc)
            self._driver_errors[(group, name)] = info
            raise
        except Exception as exc:
            info.error = _summary(exc)
            self._driver_errors[(group, name)] = info
            raise PluginError(
                f"the '{name}' driver of {info.distribution} {info.version} (entry point "
                f"{info.value}) failed to load: {info.error}"
            ) from exc
        return cls


_plugins: Plugins | None = None
_plugins_lock = threading.Lock()


def get_plugins() -> Plugins:
    """The process-wide plugins (autoloading), created on first use."""
    global _plugins  # noqa: PLW0603 - lazily created singleton
    if _plugins is None:
        with _plugins_lock:
            if _plugins is None:
                _plugins = Plugins()
    return _plugins


@contextlib.contextmanager
def use_plugins(plugins: Plugins) -> Iterator[Plugins]:
    """Make `plugins` the process-wide plugins inside the block (tests)."""
    global _plugins  # noqa: PLW0603
    previous = _plugins
    _plugins = plugins
    try:
        yield plugins
    finally:
        _plugins = previous
