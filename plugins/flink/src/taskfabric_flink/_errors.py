"""Flink's errors, summarized: the root cause in a line or two (the Python exception a UDF
worker raised, else the deepest Java cause), not the hundreds of lines of Java stack that
reach the client."""

from __future__ import annotations

import re

__all__ = [
    "FlinkJobError",
    "error_class",
    "root_cause",
    "summarize_exception",
    "user_frames",
]

_MAX_CHARS = 700

_PY_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))(: .*)?$")
_JVM_EXC_LINE = re.compile(
    r"^\s*(?:Caused by: )?((?:[a-z][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error|Throwable))"
    r"(?::\s?(.*))?$"
)
#: Java causes that only wrap the real one: skipped when a deeper cause exists.
_WRAPPERS = (
    "ExecutionException",
    "CompletionException",
    "JobExecutionException",
    "JobException",
    "TableException",
    "FlinkRuntimeException",
    "Py4JJavaError",
)


class FlinkJobError(Exception):
    """A Flink task failed; the subclass's name is the root cause's class (`ZeroDivisionError`
    raised by a UDF, `ValidationException`, `JobExecutionException`), which becomes the
    attempt's error code, and the message says where it came from."""

    show_traceback = False  # the message is the story; the client's stack is Java's


_classes: dict[str, type[FlinkJobError]] = {}


def error_class(name: str) -> type[FlinkJobError]:
    """A FlinkJobError subclass called `name`, so the attempt's error code is the cause's."""
    if not name.isidentifier():
        name = "FlinkJobError"
    cls = _classes.get(name)
    if cls is None:
        cls = type(name, (FlinkJobError,), {"__module__": __name__})
        _classes[name] = cls
    return cls


def _clip(text: str, limit: int = _MAX_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _python_error(text: str) -> tuple[str, str, str] | None:
    """(exception class, message, the traceback's frames) of the last Python traceback in
    `text`, or None."""
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    lines = text[start:].splitlines()[1:]
    frames: list[str] = []
    for line in lines:
        stripped = line.strip()
        if not line.startswith(" ") and _PY_EXC_LINE.match(stripped):
            match = _PY_EXC_LINE.match(stripped)
            assert match is not None
            name = match.group(1).rsplit(".", 1)[-1]
            return name, (match.group(2) or "").removeprefix(": "), "\n".join(frames)
        frames.append(line)
    return None


def user_frames(frames: str) -> str:
    """The frames of a UDF worker's traceback that are not PyFlink's or Beam's own."""
    keep: list[str] = []
    skip = False
    for line in frames.splitlines():
        if line.lstrip().startswith('File "'):
            skip = any(part in line for part in ('"pyflink/', '"apache_beam/', "<frozen "))
            skip = skip or any(part in line for part in ("/pyflink/", "/apache_beam/", "<string>"))
        if not skip:
            keep.append(line)
    return "\n".join(keep)


def _java_causes(text: str) -> list[tuple[str, str]]:
    """(class, message) of every Java exception line in `text`, outermost first."""
    out: list[tuple[str, str]] = []
    for line in text.splitlines():
        match = _JVM_EXC_LINE.match(line)
        if match is not None:
            out.append((match.group(1), match.group(2) or ""))
    return out


def root_cause(text: str) -> tuple[str, str, str] | None:
    """(error code, one-line summary, detail) of a Flink failure's text (a client exception,
    a JobManager's exception history entry, a driver log), or None when it names none.

    A Python exception from a UDF worker wins (its class is the code, the summary says
    where it was raised); else the deepest Java cause that is not a mere wrapper."""
    python = _python_error(text)
    if python is not None:
        name, message, frames = python
        where = "a Python UDF worker raised" if "SDK harness" in text else "Python raised"
        summary = f"{where} {name}: {message}" if message else f"{where} {name}"
        return name, _clip(summary), user_frames(frames)
    causes = _java_causes(text)
    if not causes:
        return None
    real = [c for c in causes if c[0].rsplit(".", 1)[-1] not in _WRAPPERS] or causes
    cls, message = real[-1]
    name = cls.rsplit(".", 1)[-1]
    return name, _clip(f"{cls}: {message}" if message else cls), ""


def summarize_exception(exc: BaseException) -> tuple[str, str, str] | None:
    """`root_cause` of an exception raised by PyFlink (a Py4JJavaError from the gateway, a
    PyFlink exception), else None: other exceptions are the task's own."""
    module = type(exc).__module__
    if not module.startswith(("pyflink", "py4j")):
        return None
    text = str(exc)  # a Py4JJavaError and PyFlink's JavaException carry the Java stack
    found = root_cause(text)
    if found is None:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        return type(exc).__name__, _clip(first or type(exc).__name__), ""
    return found
