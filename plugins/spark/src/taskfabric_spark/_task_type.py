"""`SparkTaskType`: runs the task's function as a Spark driver, with a SparkSession."""

from __future__ import annotations

import shutil
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, ClassVar

from taskfabric.logs import get_logger
from taskfabric.plugin_api import TaskCall, TaskConfig, TaskType
from taskfabric_spark._config import Spark, merged_conf
from taskfabric_spark._errors import error_class, summarize_exception
from taskfabric_spark._session import (
    apply_runtime_conf,
    base_conf,
    get_or_create,
    set_current_session,
)

__all__ = ["SparkTaskType"]

log = get_logger("taskfabric.spark")


_shipped: set[str] = set()
_ship_lock = threading.Lock()


def _ship_module(context: Any, function: Any, work_dir: Path) -> None:
    """Make the task's own module importable by Python workers (UDFs and lambdas defined
    there are pickled by reference): its file, or its top-level package zipped, unless it is
    an installed distribution's."""
    module = sys.modules.get(getattr(function, "__module__", ""))
    source = getattr(module, "__file__", None)
    if module is None or not source:
        return
    path = Path(source).resolve()
    if any(part in ("site-packages", "dist-packages") for part in path.parts):
        return
    depth = module.__name__.count(".")
    root = path.parents[depth] if depth else path
    if depth and path.name == "__init__.py":
        root = path.parents[depth]
    with _ship_lock:
        if str(root) in _shipped:
            return
        if root.is_file():
            context.addPyFile(str(root))
        else:
            work_dir.mkdir(parents=True, exist_ok=True)
            archive = shutil.make_archive(
                str(work_dir / f"{root.name}-{uuid.uuid4().hex[:8]}"),
                "zip",
                root_dir=root.parent,
                base_dir=root.name,
            )
            context.addPyFile(archive)
        _shipped.add(str(root))


class SparkTaskType(TaskType):
    """Calls the decorated function inside a Spark driver.

    The backend (`spark-local`, `spark-submit`) starts the session before the inputs are
    read; on any other backend the task starts a `local[*]` session of its own. Spark jobs
    run in a job group named after the attempt, which a cancel of the attempt stops. Errors
    from Spark are summarized (`SparkTaskError` subclasses named after Spark's exception).
    """

    name: ClassVar[str] = "spark"
    config_model: ClassVar[type[TaskConfig] | None] = Spark
    default_backend: ClassVar[str] = "spark-local"
    description: ClassVar[str] = "calls the function in a Spark driver with a SparkSession"

    def run(self, call: TaskCall) -> Any:
        from taskfabric_spark._session import _current

        session = getattr(_current, "session", None)
        own = session is None
        if session is None:  # not on a Spark backend: a local session of this process
            conf = {**base_conf("127.0.0.1"), **merged_conf({}, call.config)}
            session = get_or_create("local[*]", conf, f"taskfabric-{call.task.short_name}")
            ignored = apply_runtime_conf(session, merged_conf({}, call.config))
            if ignored:
                log.warning(
                    "Spark properties ignored: the process's SparkContext runs with others",
                    keys=ignored,
                )
            set_current_session(session)
        context = session.sparkContext
        _ship_module(context, call.task.function, call.work_dir)
        group = call.attempt_id or f"taskfabric-{call.task.short_name}"
        context.setJobGroup(group, f"taskfabric task {call.task.short_name}", True)
        stop_watch = threading.Event()

        def watch() -> None:
            while not stop_watch.is_set():
                if call.cancelled.wait(0.5):
                    context.cancelJobGroup(group)
                    return

        watcher = threading.Thread(target=watch, name=f"spark-cancel-{group}", daemon=True)
        watcher.start()
        try:
            return call.task.function(**call.inputs)
        except Exception as exc:
            summary = summarize_exception(exc)
            if summary is None:
                raise
            code, message = summary
            # The whole of Spark's message goes to the driver's log, the summary to the user.
            print(f"taskfabric-spark: {type(exc).__name__}: {exc}", file=sys.stderr)
            raise error_class(code)(message).with_traceback(exc.__traceback__) from None
        finally:
            stop_watch.set()
            if context._jsc is not None:  # still running (a task cannot stop it: _session)
                context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
            if own:
                set_current_session(None)
