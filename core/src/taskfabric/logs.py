"""Logging set-up: structlog with a console renderer for people and JSON for machines.

The engine binds ids with ``structlog.contextvars.bind_contextvars(execution_id=..., node_id=...)``
and every line logged in that context carries them. Context variables follow ``asyncio`` tasks but
not plain threads: run work in a thread pool with ``contextvars.copy_context().run`` to keep them.

``get_logger(__name__)`` is safe at import time: the logger binds on first use and again after each
``configure_logging``, so reconfiguring applies to loggers made before. A call below the configured
level is a no-op method (``structlog.make_filtering_bound_logger``) and costs about as much as
calling an empty function.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

__all__ = ["LEVELS", "configure_logging", "get_logger"]

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
        lines = [(render(dict(event_dict)) + "\n", out) for render, out in self._sinks]
        with self._lock:
            for line, out in lines:
                out.write(line)
                out.flush()

    log = debug = info = warn = warning = error = err = critical = fatal = exception = msg


def _hand_to_sinks(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> Any:
    # The last processor passes the event dict itself on; each sink renders its own copy.
    return (event_dict,), {}


def _console_renderer(stream: TextIO) -> _Render:
    is_tty = getattr(stream, "isatty", lambda: False)()
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


_generation = 0
_file: TextIO | None = None
_configure_lock = threading.Lock()


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
    global _file, _generation  # noqa: PLW0603 -- one process-wide logging set-up
    try:
        min_level = LEVELS[level.lower()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}") from None
    if fmt not in ("console", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use 'console' or 'json'")
    out = sys.stderr if stream is None else stream
    sinks: list[tuple[_Render, TextIO]] = [
        (_console_renderer(out) if fmt == "console" else _json_renderer(), out)
    ]
    with _configure_lock:
        if _file is not None:
            _file.close()
            _file = None
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
            _file = file.open("a", encoding="utf-8")
            sinks.append((_json_renderer(), _file))
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
            wrapper_class=structlog.make_filtering_bound_logger(min_level),
            context_class=dict,
            logger_factory=lambda *args: sink_logger,
            cache_logger_on_first_use=False,
        )
        _generation += 1
        for logger in list(_loggers):
            logger._bind()


_METHODS = ("debug", "info", "warning", "warn", "error", "exception", "critical", "log", "bind")


class _Logger:
    """What ``get_logger`` returns: a logger bound on first use and again at each reconfigure.

    Binding copies the bound logger's methods onto the instance, so a call costs what a call on a
    plain structlog logger costs (a level below the minimum is a no-op method); the methods of the
    class only serve the first call before ``configure_logging`` has run.
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._bound: FilteringBoundLogger | None = None
        _loggers.add(self)
        if _generation:
            self._bind()

    def _bind(self) -> FilteringBoundLogger:
        if _generation == 0 and not structlog.is_configured():
            configure_logging()  # binds every logger, this one too
            if self._bound is not None:
                return self._bound
        bound = cast(FilteringBoundLogger, structlog.get_logger().bind(logger=self._name))
        for method in _METHODS:
            setattr(self, method, getattr(bound, method))
        self._bound = bound
        return bound

    def _current(self) -> FilteringBoundLogger:
        return self._bound if self._bound is not None else self._bind()

    def debug(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().debug(event, *args, **kw)

    def info(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().info(event, *args, **kw)

    def warning(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().warning(event, *args, **kw)

    def warn(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().warning(event, *args, **kw)

    def error(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().error(event, *args, **kw)

    def exception(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().exception(event, *args, **kw)

    def critical(self, event: str, *args: Any, **kw: Any) -> Any:
        return self._current().critical(event, *args, **kw)

    def log(self, level: int, event: str, *args: Any, **kw: Any) -> Any:
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
