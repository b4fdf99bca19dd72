"""Logging set-up: structlog with a console renderer for people and JSON for machines.

The engine binds ids with ``structlog.contextvars.bind_contextvars(execution_id=..., node_id=...)``
and every line logged in that context carries them. Context variables follow ``asyncio`` tasks but
not plain threads: run work in a thread pool with ``contextvars.copy_context().run`` to keep them.

``get_logger(__name__)`` is safe at import time: the logger binds on first use and again after each
``configure_logging``, so reconfiguring applies to loggers made before. A call below the configured
level is a no-op method (``structlog.make_filtering_bound_logger``) and costs about as much as
calling an empty function.

structlog itself (with asyncio, rich's tracebacks and pygments, a tenth of a `taskfabric run`
when imported) is imported by the first line at or above the configured level, not before:
``configure_logging`` records the set-up, a filtered call never needs structlog, and
``bind_contextvars`` / ``bound_contextvars`` here set the very context variables that
``structlog.contextvars`` reads and writes (one registry, shared once structlog is loaded).
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TextIO, cast

from taskfabric.lazy import lazy_module

if TYPE_CHECKING:
    import structlog
    from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger
else:  # imported by the first line logged (see the module's docstring)
    structlog = lazy_module("structlog", __name__, "structlog")
    EventDict = dict[str, Any]
    FilteringBoundLogger = WrappedLogger = Any

__all__ = [
    "LEVELS",
    "bind_contextvars",
    "bound_contextvars",
    "configure_logging",
    "context_variables",
    "get_logger",
    "unbind_contextvars",
]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}

_Render = Callable[[EventDict], str]


class _SinkLogger:
    """Renders each event once per sink (console or JSON) and writes it there, whole lines only."""

    def __init__(self, sinks: list[tuple[_Render, TextIO]]) -> None:
        self._sinks = sinks
        self._lock = threading.Lock()

    def msg(self, event_dict: EventDict) -> None:
        # A log call never raises, as with the standard library's logging: a closed or full
        # stream, a broken pipe or a value whose repr fails must not end the thread that
        # logged (a backend's watcher, whose attempts would then wait forever).
        lines = [(_rendered(render, event_dict) + "\n", out) for render, out in self._sinks]
        with self._lock:
            for line, out in lines:
                try:
                    out.write(line)
                    out.flush()
                except Exception:  # nowhere left to say it
                    pass

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


def _rendered(render: _Render, event_dict: EventDict) -> str:
    try:
        return render(dict(event_dict))
    except Exception as exc:
        try:
            event = str(event_dict.get("event", ""))[:200]
        except Exception:
            event = "?"
        return f"{event} (the rest of this log line could not be rendered: {type(exc).__name__})"


def _hand_to_sinks(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    # The last processor passes the event dict itself on; each sink renders its own copy.
    return (event_dict,), {}


def _console_renderer(stream: TextIO) -> _Render:
    try:
        is_tty = getattr(stream, "isatty", lambda: False)()
    except (OSError, ValueError):  # closed since it was configured
        is_tty = False
    colors = bool(is_tty) and "NO_COLOR" not in os.environ
    renderer = structlog.dev.ConsoleRenderer(
        colors=colors,
        exception_formatter=(
            structlog.dev.default_exception_formatter if colors else structlog.dev.plain_traceback
        ),
    )
    return lambda event_dict: str(renderer(None, "", event_dict))


def _json_renderer() -> _Render:
    format_exc_info = structlog.processors.format_exc_info
    renderer = structlog.processors.JSONRenderer()
    return lambda event_dict: str(renderer(None, "", format_exc_info(None, "", event_dict)))


@dataclass(frozen=True)
class _Setup:
    """What `configure_logging` asked for, applied to structlog by the first line logged."""

    min_level: int
    fmt: str
    out: TextIO
    file: TextIO | None


_generation = 0
_file: TextIO | None = None
_configure_lock = threading.RLock()
#: the set-up not yet given to structlog (None once it is, or before any configure_logging)
_pending: _Setup | None = None
#: the configured minimum level: calls below it return at once, before structlog is loaded
_min_level = logging.INFO


def configure_logging(
    level: str = "info",
    fmt: Literal["console", "json"] = "console",
    file: Path | None = None,
    stream: TextIO | None = None,
) -> None:
    """Send taskfabric's logs at ``level`` and above to ``stream`` (``sys.stderr`` when ``None``).

    ``fmt`` picks the renderer of the stream: ``console`` (colors only on a terminal and without
    ``NO_COLOR``) or ``json`` (one object per line). With ``file``, every line is also appended
    there as JSON. Calling it again replaces the previous set-up (and closes its file).
    """
    global _file, _generation, _pending, _min_level  # noqa: PLW0603 -- one process-wide set-up
    try:
        min_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    if fmt not in ("console", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use 'console' or 'json'")
    out = sys.stderr if stream is None else stream
    with _configure_lock:
        if _file is not None:
            _file.close()
            _file = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            _file = file.open("a", encoding="utf-8")
        _pending = _Setup(min_level, fmt, out, _file)
        _min_level = min_level
        _generation += 1
        for logger in list(_loggers):
            logger._unbind()


def _apply(setup: _Setup) -> None:
    """Give `setup` to structlog (imported here). Called with `_configure_lock` held."""
    out = setup.out
    sinks: list[tuple[_Render, TextIO]] = [
        (_console_renderer(out) if setup.fmt == "console" else _json_renderer(), out)
    ]
    if setup.file is not None:
        sinks.append((_json_renderer(), setup.file))
    sink_logger = _SinkLogger(sinks)
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        _hand_to_sinks,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(setup.min_level),
        context_class=dict,
        logger_factory=lambda *args: sink_logger,
        cache_logger_on_first_use=False,
    )
    _registry()  # structlog is loaded: the ids bound so far become its variables


_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "log", "bind")


class _Logger:
    """What ``get_logger`` returns: a logger bound on first use and again after each reconfigure.

    Binding copies the bound logger's methods onto the instance, so a call costs what a call on a
    plain structlog logger costs (a level below the minimum is a no-op method). The methods of the
    class serve the calls before that: once ``configure_logging`` has run, one below its level
    returns at once (no structlog needed); any other binds.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: FilteringBoundLogger | None = None
        _loggers.add(self)

    def _unbind(self) -> None:
        for method in _METHODS:
            self.__dict__.pop(method, None)
        self._bound = None

    def _bind(self) -> FilteringBoundLogger:
        global _pending  # noqa: PLW0603 -- the process-wide set-up, applied once
        with _configure_lock:
            if _generation == 0 and not structlog.is_configured():
                configure_logging()
            setup = _pending
            if setup is not None:
                _pending = None
                _apply(setup)
            bound = cast(FilteringBoundLogger, structlog.get_logger().bind(logger=self._name))
            for method in _METHODS:
                setattr(self, method, getattr(bound, method))
            self._bound = bound
        return bound

    def _current(self) -> FilteringBoundLogger:
        return self._bound if self._bound is not None else self._bind()

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > logging.DEBUG:
            return None
        return self._current().debug(event, *args, **kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > logging.INFO:
            return None
        return self._current().info(event, *args, **kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > logging.WARNING:
            return None
        return self._current().warning(event, *args, **kw)

    def warn(self, event: str, *args: Any, **kw: Any) -> Any:
        return self.warning(event, *args, **kw)

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > logging.ERROR:
            return None
        return self._current().error(event, *args, **kw)

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > logging.ERROR:
            return None
        return self._current().exception(event, *args, **kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().critical(event, *args, **kw)

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
        if _generation and _min_level > level:
            return None
        return self._current().log(level, event, *args, **kw)

    def bind(self, **new_values: Any) -> FilteringBoundLogger:
        return self._current().bind(**new_values)

    def __getattr__(self, attribute: str) -> Any:
        # The rest (new, unbind, the async methods, ...): rarer, so the slow path will do.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        return getattr(self._current(), attribute)

    def __repr__(self) -> str:
        return f"<taskfabric logger {self._name!r}>"


_loggers: weakref.WeakSet[_Logger] = weakref.WeakSet()


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry ``logger=name``; use ``get_logger(__name__)``."""
    return cast(FilteringBoundLogger, _Logger(name))


# -- the ids bound to every line (structlog.contextvars' variables) ------------------------

_PREFIX = "structlog_"  # structlog.contextvars.STRUCTLOG_KEY_PREFIX
_context_vars: dict[str, contextvars.ContextVar[Any]] = {}


def _registry() -> dict[str, contextvars.ContextVar[Any]]:
    """The variables by name: structlog's own registry once structlog is loaded (this
    module's, made before, handed over to it), so that both sides set the same variables.

    The hand-over happens when this module loads structlog (the first line logged) or at
    the next bind after code elsewhere did: a key bound through structlog's own functions
    between that import and that bind gets a second variable (structlog then shows one of
    the two values), which no taskfabric code does."""
    global _context_vars  # noqa: PLW0603 -- one registry per process, as structlog's
    module = sys.modules.get("structlog.contextvars")
    theirs = getattr(module, "_CONTEXT_VARS", None) if module is not None else None
    if isinstance(theirs, dict) and theirs is not _context_vars:
        for name, var in _context_vars.items():
            theirs.setdefault(name, var)
        _context_vars = theirs
    return _context_vars


def _variable(key: str) -> contextvars.ContextVar[Any]:
    registry = _registry()
    name = _PREFIX + key
    var = registry.get(name)
    if var is None:
        var = registry.setdefault(name, contextvars.ContextVar(name, default=Ellipsis))
    return var


#: keys -> (the registry they were found in, their variables): see context_variables
_found: dict[tuple[str, ...], tuple[dict[str, contextvars.ContextVar[Any]], tuple[Any, ...]]] = {}


def context_variables(keys: tuple[str, ...]) -> tuple[contextvars.ContextVar[Any], ...]:
    """The variables that ``bind_contextvars`` sets for `keys`, to set in a context of the
    caller's own (``contextvars.copy_context().run``: no token to reset when it ends). Kept
    while the registry is the same (a variable, once in a registry, is never replaced): the
    `local` backend binds an attempt's ids so for every attempt."""
    registry = _registry()
    found = _found.get(keys)
    if found is None or found[0] is not registry:
        found = _found[keys] = (registry, tuple(_variable(key) for key in keys))
    return found[1]


def bind_contextvars(**values: Any) -> Mapping[str, contextvars.Token[Any]]:
    """``structlog.contextvars.bind_contextvars`` without importing structlog."""
    return {key: _variable(key).set(value) for key, value in values.items()}


def unbind_contextvars(*keys: str) -> None:
    """``structlog.contextvars.unbind_contextvars`` without importing structlog."""
    registry = _registry()
    for key in keys:
        var = registry.get(_PREFIX + key)
        if var is not None:
            var.set(Ellipsis)


class bound_contextvars:
    """``structlog.contextvars.bound_contextvars`` without importing structlog: the values
    bound inside the block, the earlier ones back after it. (A class, not a generator: the
    local backend binds an attempt's ids around each attempt.)"""

    __slots__ = ("_tokens", "_values")

    def __init__(self, **values: Any) -> None:
        self._values = values

    def __enter__(self) -> None:
        registry = _registry()  # once for all the keys (the local backend binds 3 per attempt)
        tokens = []
        for key, value in self._values.items():
            var = registry.get(_PREFIX + key)
            if var is None:
                var = _variable(key)
            tokens.append((var, var.set(value)))
        self._tokens = tokens

    def __exit__(self, *exc: object) -> None:
        for var, token in reversed(self._tokens):
            var.reset(token)
