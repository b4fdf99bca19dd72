"""The program that the spark-submit backend submits: the Spark driver of one attempt.

    spark-submit [options] .../taskfabric_spark/_driver.py --task-template URI --inputs URI ...

It starts the SparkSession from the properties spark-submit was given, says which application
it is (the backend reads that line from the driver log), then runs the attempt through the
core's `taskfabric-execute` entrypoint, whose exit code (0 ok, 1 task failed, 2 not loaded) is
the driver's.
"""

from __future__ import annotations

import sys
from pathlib import Path

#: The line the backend looks for in the driver log, followed by the application id.
APP_LINE = "taskfabric-spark: application "


def main(argv: list[str]) -> int:
    from pyspark.sql import SparkSession

    from taskfabric.execute import main as execute
    from taskfabric_spark._session import set_current_session

    session = SparkSession.builder.getOrCreate()
    context = session.sparkContext
    print(f"{APP_LINE}{context.applicationId} on {context.master}", file=sys.stderr, flush=True)
    set_current_session(session)
    try:
        return execute(argv)
    finally:
        set_current_session(None)
        session.stop()


if __name__ == "__main__":
    # spark-submit runs this file as a script, which puts its folder (the package) first on
    # sys.path: take it off, so that the package's modules do not shadow top-level ones.
    if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
        sys.path.pop(0)
    sys.exit(main(sys.argv[1:]))
