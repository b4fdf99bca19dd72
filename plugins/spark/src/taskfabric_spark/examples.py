"""pyspark's own example programs, run unchanged as taskfabric tasks: a smoke test of a Spark
backend, and a model for wrapping an existing driver program.

    taskfabric run taskfabric_spark.examples:pyspark_examples --partitions 4

Each task runs one program from the installed pyspark (`examples/src/main/python`) as
`spark-submit` would: as `__main__`, with its arguments in `sys.argv`, ending with its own
`spark.stop()`. It returns what the program printed.
"""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
import threading
from pathlib import Path

from taskfabric import File, task, workflow
from taskfabric_spark._config import Spark

__all__ = [
    "numbers",
    "pi_example",
    "pyspark_examples",
    "run_pyspark_example",
    "sort_example",
    "wordcount_example",
    "words",
]

#: sys.argv and sys.stdout belong to the process: one program at a time (spark-local runs
#: attempts in threads of one process).
_one_program = threading.Lock()


def _examples_dir() -> Path:
    """Where the Spark installation keeps them: $SPARK_HOME (what spark-submit sets for its
    driver, which imports pyspark from a zip), else the installed pyspark package."""
    import os

    home = os.environ.get("SPARK_HOME")
    if not home:
        import pyspark

        home = str(Path(pyspark.__file__).parent)
    return Path(home) / "examples" / "src" / "main" / "python"


def run_pyspark_example(name: str, *args: str) -> str:
    """Run pyspark's example program `name` (e.g. "pi.py") unchanged with `args`, and return
    what it printed."""
    path = _examples_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"pyspark ships no example program {name!r} (looked in {path})")
    printed = io.StringIO()
    with _one_program:
        argv = sys.argv
        sys.argv = [str(path), *args]
        try:
            with contextlib.redirect_stdout(printed):
                runpy.run_path(str(path), run_name="__main__")
        finally:
            sys.argv = argv
    return printed.getvalue()


@task(config=Spark())
def pi_example(partitions: int) -> str:
    """examples/src/main/python/pi.py"""
    return run_pyspark_example("pi.py", str(partitions))


@task(config=Spark())
def wordcount_example(text: File) -> str:
    """examples/src/main/python/wordcount.py"""
    return run_pyspark_example("wordcount.py", str(text.path))


@task(config=Spark())
def sort_example(numbers: File) -> str:
    """examples/src/main/python/sort.py"""
    return run_pyspark_example("sort.py", str(numbers.path))


@task
def words() -> File:
    """A small text for the word count."""
    f = File.new("words.txt")
    Path(f.path).write_text("to be or not to be\nto see\n")
    return f


@task
def numbers() -> File:
    """A few numbers for the sort."""
    f = File.new("numbers.txt")
    Path(f.path).write_text("30 4\n100 -2\n")
    return f


@workflow
def pyspark_examples(partitions: int = 2) -> tuple[str, str, str]:
    """pi.py, wordcount.py and sort.py: what each printed."""
    return (
        pi_example(partitions=partitions),
        wordcount_example(text=words()),
        sort_example(numbers=numbers()),
    )
