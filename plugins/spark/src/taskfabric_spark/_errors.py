"""Spark's errors, summarized: the Python or JVM exception in one or two lines, not the
hundreds of lines of plan and stack that Spark puts into its messages."""

from __future__ import annotations

import re

__all__ = ["SparkTaskError", "error_class", "summarize_exception", "summarize_log"]

_MAX_CHARS = 600

# "Traceback (most recent call last):" ... "ZeroDivisionError: division by zero"
_PY_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning))(: .*)?$")
# "org.apache.spark.SparkException: Job aborted ..." / "Caused by: java.lang.OutOfMemoryError"
_JVM_EXC_LINE = re.compile(
    r"^(?:Caused by: |Exception in thread \"[^\"]*\" )?"
    r"((?:[a-z][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error))(?::\s?(.*))?$"
)


class SparkTaskError(Exception):
    """A Spark task failed; the subclass's name is Spark's own exception class
    (`AnalysisException`, `PythonException`, `SparkException`), which becomes the attempt's
    error code, and the message is Spark's, shortened."""


_classes: dict[str, type[SparkTaskError]] = {}


def error_class(name: str) -> type[SparkTaskError]:
    """A SparkTaskError subclass called `name`, so the attempt's error code is Spark's."""
    if not name.isidentifier():
        name = "SparkTaskError"
    cls = _classes.get(name)
    if cls is None:
        cls = type(name, (SparkTaskError,), {"__module__": __name__})
        _classes[name] = cls
    return cls


def _clip(text: str, limit: int = _MAX_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _python_traceback_error(text: str) -> str | None:
    """The exception line that ends the last Python traceback in `text`."""
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return None
    found: str | None = None
    for line in text[start:].splitlines()[1:]:
        stripped = line.strip()
        if not line.startswith(" ") and _PY_EXC_LINE.match(stripped):
            found = stripped
            break
    return found


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def summarize_exception(exc: BaseException) -> tuple[str, str] | None:
    """(error code, short message) for an exception raised by Spark, else None.

    - an error in a Python UDF (PythonException, or a job failure caused by one): the
      Python exception that the worker raised;
    - Spark SQL errors (AnalysisException, ...): their first line, which holds the error
      condition and the message, without the query plan;
    - other JVM errors reaching Python (Py4JJavaError): the Java exception and its message.
    """
    module = type(exc).__module__
    if not (module.startswith(("pyspark", "py4j"))):
        return None
    name = type(exc).__name__
    text = str(exc)
    if name == "Py4JJavaError":
        java = getattr(exc, "java_exception", None)
        text = str(java.toString()) if java is not None else text
        jvm = _JVM_EXC_LINE.match(_first_line(text))
        if jvm is not None:
            name = jvm.group(1).rsplit(".", 1)[-1]
            text = jvm.group(2) or ""
    worker_error = _python_traceback_error(text)
    first = _first_line(text)
    if worker_error is not None:
        where = "a Python worker raised" if "Python worker" in text else "Python raised"
        message = f"{where} {worker_error}"
        if first and "Traceback" not in first and "Python worker" not in first:
            message = f"{_clip(first, 300)}: {message}"
        return name, _clip(message)
    return name, _clip(first or name)


def summarize_log(text: str) -> str:
    """The error a driver log ends with: the Python exception (a task that could not even be
    loaded, a crashed driver) or the first JVM exception, else ''."""
    python = _python_traceback_error(text)
    if python is not None:
        cause = _jvm_log_cause(text) if "Py4JJavaError" in python else ""
        return _clip(f"{python} Cause in the driver log: {cause}" if cause else python)
    for line in text.splitlines():
        stripped = line.strip()
        match = _JVM_EXC_LINE.match(stripped)
        if match is not None:
            return _clip(stripped)
    for line in reversed(text.splitlines()):
        if " ERROR " in line:
            return _clip(line.split(" ERROR ", 1)[1])
    return ""


def _jvm_log_cause(text: str) -> str:
    """What Spark's own log says went wrong, when Python only saw a Py4JJavaError: the first
    failed connection and the first ERROR line (e.g. "Failed to connect to master
    127.0.0.1:7077", "All masters are unresponsive! Giving up.")."""
    found: list[str] = []
    connect = error = ""
    for line in text.splitlines():
        if not connect and " WARN " in line and "Failed to connect to" in line:
            connect = line.split(" WARN ", 1)[1].split(": ", 1)[-1].strip()
        if not error and " ERROR " in line:
            error = line.split(" ERROR ", 1)[1].split(": ", 1)[-1].strip()
    found = [part for part in (connect, error) if part]
    return "; ".join(found)
