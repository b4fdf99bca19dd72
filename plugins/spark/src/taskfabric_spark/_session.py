"""Java and SparkSessions: checking the JVM, the properties every session gets, the session of
the running task.

pyspark is imported only inside functions, so the hook module (loaded by every taskfabric
process) stays cheap.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "JavaInfo",
    "SparkSessionUnavailableError",
    "base_conf",
    "check_java",
    "java_env",
    "spark_home",
    "spark_session",
]

#: The Java major versions pyspark 4 runs on.
SUPPORTED_JAVA = (17, 21)

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


class SparkSessionUnavailableError(RuntimeError):
    """No SparkSession for this task: it is not a Spark task, or not running."""


@dataclass(frozen=True)
class JavaInfo:
    ok: bool
    message: str
    major: int = 0


def java_env(java_home: str = "", extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a JVM of ours starts with: 127.0.0.1 unless told otherwise."""
    env = dict(os.environ)
    env.update(extra or {})
    if java_home:
        env["JAVA_HOME"] = java_home
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    env.setdefault("PYSPARK_DRIVER_PYTHON", env["PYSPARK_PYTHON"])
    return env


def _java_command(java_home: str) -> str | None:
    home = java_home or os.environ.get("JAVA_HOME", "")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


def check_java(java_home: str = "") -> JavaInfo:
    """Whether a Java that pyspark runs on is there, with a message that says what to do."""
    java = _java_command(java_home)
    fix = (
        "install Java 17 (Debian/Ubuntu: `apt-get install -y openjdk-17-jre-headless`) "
        "or set the backend's `java_home`"
    )
    if java is None:
        where = (
            f"JAVA_HOME={java_home or os.environ.get('JAVA_HOME')}"
            if (java_home or os.environ.get("JAVA_HOME"))
            else "PATH"
        )
        return JavaInfo(False, f"no `java` found on {where}: Spark needs Java; {fix}")
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JavaInfo(False, f"cannot run {java} -version: {exc}; {fix}")
    match = _VERSION.search(proc.stderr + proc.stdout)
    if match is None:
        return JavaInfo(False, f"{java} -version printed no version: {proc.stderr.strip()}")
    major = int(match.group(1))
    if major == 1:  # "1.8.0_392" is Java 8
        major = int(match.group(2) or 0)
    if major not in SUPPORTED_JAVA:
        wanted = " or ".join(str(v) for v in SUPPORTED_JAVA)
        return JavaInfo(
            False, f"{java} is Java {major}, but pyspark 4 needs Java {wanted}; {fix}", major
        )
    return JavaInfo(True, f"{java} is Java {major}", major)


def spark_home() -> Path:
    """The Spark installation that pyspark ships (its `bin/spark-submit`, `jars/`)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def base_conf(driver_host: str) -> dict[str, str]:
    """Properties every session of ours gets unless the backend's `conf` says otherwise."""
    return {
        "spark.driver.host": driver_host,
        "spark.driver.bindAddress": driver_host,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # Errors from Python code: the Python traceback, not the JVM's.
        "spark.sql.pyspark.jvmStacktrace.enabled": "false",
    }


_lock = threading.Lock()
_current = threading.local()


def set_current_session(session: SparkSession | None) -> None:
    """The session `spark_session()` returns in this thread (set by the spark task type)."""
    if session is not None:
        _keep_sessions_of_tasks()
    _current.session = session


_guarded = False


def _keep_sessions_of_tasks() -> None:
    """Make `spark.stop()` (and `sc.stop()`) inside a Spark task leave the session running.

    Driver programs end with `spark.stop()`, pyspark's own examples too, and must run
    unchanged as tasks. But the session is not theirs to stop: on spark-local it is the one
    context every attempt of the backend shares (stopping it would fail the others), and on
    spark-submit the driver still writes the task's outputs with it; the plugin stops it when
    the application ends. Outside a task, stop() stops as usual.
    """
    global _guarded  # noqa: PLW0603 - installed once per process
    with _lock:
        if _guarded:
            return
        from pyspark import SparkContext
        from pyspark.sql import SparkSession

        def guard(stop: Any, what: str) -> Any:
            def stop_unless_in_a_task(self: Any) -> None:
                if getattr(_current, "session", None) is not None:
                    from taskfabric.logs import get_logger

                    get_logger("taskfabric.spark").info(
                        f"{what} in a Spark task: the session stays up; taskfabric stops it "
                        "when the attempt's application ends"
                    )
                    return
                stop(self)

            stop_unless_in_a_task.__doc__ = stop.__doc__
            return stop_unless_in_a_task

        SparkSession.stop = guard(SparkSession.stop, "spark.stop()")  # type: ignore[method-assign]
        SparkContext.stop = guard(SparkContext.stop, "sc.stop()")  # type: ignore[method-assign]
        _guarded = True


def spark_session() -> SparkSession:
    """The SparkSession of the running Spark task (`@task(config=Spark(...))`).

    Its properties are the task's `Spark` config over its backend's `conf`. Raises
    `SparkSessionUnavailableError` outside a Spark task.
    """
    session: SparkSession | None = getattr(_current, "session", None)
    if session is None:
        raise SparkSessionUnavailableError(
            "spark_session() is only available while a Spark task runs: declare the task "
            "with @task(config=Spark(...)) (and call it from a workflow)"
        )
    return session


def session_for_values() -> SparkSession:
    """The session that reads Spark DataFrame inputs: the running task's, else a `local[*]`
    session of this process (a Spark DataFrame given to a task that is not a Spark task)."""
    session: SparkSession | None = getattr(_current, "session", None)
    if session is not None:
        return session
    return get_or_create("local[*]", base_conf("127.0.0.1"), "taskfabric")


def get_or_create(master: str, conf: Mapping[str, str], app_name: str) -> SparkSession:
    """The process's SparkSession, started with `conf` if there is none yet.

    One JVM runs one SparkContext: properties that can only be set at start-up are taken from
    the first session; later calls can only change runtime (SQL) properties.
    """
    from pyspark.sql import SparkSession

    with _lock:
        active = SparkSession.getActiveSession()
        if active is None:
            builder: Any = SparkSession.builder.appName(app_name)
            if master:
                builder = builder.master(master)
            for key, value in conf.items():
                builder = builder.config(key, value)
            active = builder.getOrCreate()
        return active


def apply_runtime_conf(session: SparkSession, conf: Mapping[str, str]) -> list[str]:
    """Set the runtime properties of `conf` on `session`; the keys that could not be set
    because the running SparkContext was started with another value (static properties)."""
    ignored: list[str] = []
    running = session.sparkContext.getConf()
    for key, value in conf.items():
        if session.conf.isModifiable(key):
            session.conf.set(key, value)
        elif running.get(key) != value:
            ignored.append(key)
    return ignored
