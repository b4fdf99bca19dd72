"""`taskfabric-execute`: run one task attempt, the door through which every out-of-process
backend (subprocess, containers, Spark, AWS Batch, Flink) runs user code.

    taskfabric-execute --task-template URI --inputs URI --outputs URI --error URI \\
        [--raw-prefix URI] [--work-dir PATH]

It reads the TaskTemplate and the inputs (a LiteralMap) from the blob store, imports the task
from the template's code location, runs it through its task type, and writes either the
outputs LiteralMap to `--outputs` (exit 0) or an ExecutionError document to `--error`
(exit 1 for a failed task, 2 when the task could not even be loaded). Any other exit (a
signal, `os._exit`, a crash of the interpreter) means the process died: the backend reports
that as a system error.
"""

from __future__ import annotations

import argparse
import functools
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from taskfabric.core.v1 import tasks_pb2, types_pb2
from taskfabric.plugin_api import STORAGE_GROUP, AttemptError, AttemptPhase
from taskfabric.storage import BlobStore, PackStore

EXIT_OK = 0
EXIT_TASK_FAILED = 1
EXIT_NOT_LOADED = 2


class TaskLoadError(Exception):
    pass


def store_for_uri(uri: str) -> BlobStore:
    """The blob store that serves `uri`, by its scheme (drivers of `taskfabric.storage`)."""
    from taskfabric.plugins import get_plugins

    scheme = urlparse(uri).scheme or "file"
    cls = get_plugins().driver(STORAGE_GROUP, scheme)
    store: BlobStore = cls.from_uri(uri)
    return store


def load_task(function: tasks_pb2.PythonFunction) -> Any:
    """The TaskDefinition at a template's code location."""
    from taskfabric.engine._loader import load_object
    from taskfabric.sdk import TaskDefinition

    if "<locals>" in function.qualname:
        raise TaskLoadError(
            f"task {function.qualname} is defined inside a function, so another process cannot "
            "import it: define it at module level to run it out of process"
        )
    ref = f"{function.module}:{function.qualname}"
    if function.source_file and Path(function.source_file).is_file():
        # Import by module name when that finds the same file (packages keep their relative
        # imports and a single copy of the module); else load the file itself (scripts).
        import importlib.util

        try:
            spec = importlib.util.find_spec(function.module)
        except (ImportError, ValueError):
            spec = None
        origin = Path(spec.origin).resolve() if spec is not None and spec.origin else None
        if origin != Path(function.source_file).resolve():
            ref = f"{function.source_file}:{function.qualname}"
    try:
        task, _ = load_object(ref)
    except Exception as exc:
        raise TaskLoadError(f"cannot load task {ref}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(task, TaskDefinition):
        raise TaskLoadError(f"{ref} is {type(task).__name__}, not a @task")
    return task


def run(args: argparse.Namespace) -> int:
    from taskfabric.backends._execute import execute_task
    from taskfabric.plugins import get_plugins

    store = store_for_uri(args.inputs)
    literals = PackStore(store)

    def fail(error: AttemptError, code: int) -> int:
        store.put_bytes(args.error, error.to_proto().SerializeToString())
        print(f"taskfabric-execute: {error.code}: {error.message}", file=sys.stderr)
        if error.traceback:
            print(error.traceback, file=sys.stderr)
        return code

    try:
        template = tasks_pb2.TaskTemplate()
        template.ParseFromString(literals.get(args.task_template))
        inputs = types_pb2.LiteralMap()
        inputs.ParseFromString(literals.get(args.inputs))
        task_def = load_task(template.function)
        task_type = get_plugins().task_type(template.type)
    except Exception as exc:
        return fail(
            AttemptError(
                type(exc).__name__,
                str(exc),
                kind="system",
                retryable=False,
                traceback=traceback.format_exc(),
            ),
            EXIT_NOT_LOADED,
        )
    work_dir = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="tf-"))
    work_dir.mkdir(parents=True, exist_ok=True)

    def write_outputs(data: bytes) -> str:
        store.put_bytes(args.outputs, data)
        return str(args.outputs)

    status = execute_task(
        task_def,
        template,
        task_type,
        inputs,
        store=store,
        raw_prefix=args.raw_prefix or args.outputs.rsplit("/", 1)[0] + "/raw",
        work_dir=work_dir,
        write_outputs=write_outputs,
    )
    if status.phase is AttemptPhase.SUCCEEDED:
        return EXIT_OK
    assert status.error is not None
    return fail(status.error, EXIT_TASK_FAILED)


def _preload() -> None:
    """What every attempt needs, imported once by the sandbox's fork server before it forks
    the first: a plugin that fails here fails its attempts with its own error, as in a
    fresh process."""
    import contextlib

    import taskfabric.backends._execute
    import taskfabric.engine._loader
    import taskfabric.sdk  # noqa: F401
    from taskfabric.plugins import get_plugins
    from taskfabric.types import default_engine

    default_engine()
    _parser().parse_args(["--task-template=", "--inputs=", "--outputs=", "--error="])
    plugins = get_plugins()
    with contextlib.suppress(Exception):
        plugins.task_types()
    with contextlib.suppress(Exception):
        plugins.driver(STORAGE_GROUP, "file")


@functools.cache
def _parser() -> argparse.ArgumentParser:
    """The command line's parser, built once per process (the fork server builds it before
    it forks: each attempt then parses with it instead of building it, about a millisecond
    of CPU with the copy-on-write faults of its allocations)."""
    parser = argparse.ArgumentParser(
        prog="taskfabric-execute", description="Run one taskfabric task attempt."
    )
    parser.add_argument("--task-template", required=True, help="URI of the TaskTemplate")
    parser.add_argument("--inputs", required=True, help="URI of the inputs LiteralMap")
    parser.add_argument("--outputs", required=True, help="URI to write the outputs LiteralMap")
    parser.add_argument("--error", required=True, help="URI to write an ExecutionError")
    parser.add_argument("--raw-prefix", default="", help="URI prefix for files and dataframes")
    parser.add_argument("--work-dir", default="", help="local scratch folder")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--fork-server"] and len(args) == 2:
        # The sandbox backend's fork server (taskfabric.backends._forkserver).
        from taskfabric.backends._forkserver import main as fork_server

        return fork_server(int(args[1]), _preload, main)
    return run(_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
