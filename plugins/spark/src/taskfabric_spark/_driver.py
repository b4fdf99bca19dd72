"""The program that the spark-submit backend submits: the Spark driver of one attempt.

    spark-submit [options] .../taskfabric_spark/_driver.py --task-template URI --inputs URI ...

It starts the SparkSession from the properties spark-submit was given, says which application
it is (the backend reads that line from the driver log), then runs the attempt through the
core's `taskfabric-execute` entrypoint, whose exit code (0 ok, 1 task failed, 2 not loaded) is
the driver's.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

#: The line the backend looks for in the driver log, followed by the application id.
APP_LINE = "taskfabric-spark: application "
#: The line the driver writes when it cannot start its application, followed by why.
NOT_STARTED_LINE = "taskfabric-spark: cannot start the application: "
#: The driver's exit code when it cannot reach the master.
UNREACHABLE_EXIT = 3
#: Environment variables the backend gives the driver: the master to check before the
#: SparkContext starts, and the connect timeout in seconds.
MASTER_ENV = "TASKFABRIC_SPARK_MASTER"
TIMEOUT_ENV = "TASKFABRIC_SPARK_CONNECT_TIMEOUT"


def master_addresses(master: str) -> list[tuple[str, int]]:
    """The (host, port) pairs of a standalone master URL (`spark://h1:7077,h2:7077`), else []."""
    if not master.startswith("spark://"):
        return []
    out: list[tuple[str, int]] = []
    for part in master.removeprefix("spark://").split(","):
        host, _, port = part.rpartition(":") if ":" in part else (part, "", "7077")
        out.append((host.strip("[]"), int(port or 7077)))
    return out


def unreachable_master(master: str, timeout: float) -> str:
    """Why no master of `master` accepts a connection within `timeout` seconds, or '' when one
    does (or the master is not a standalone one, whose client has its own timeouts)."""
    problems: list[str] = []
    for host, port in master_addresses(master):
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            return ""
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else str(exc)
            problems.append(f"{host}:{port}: {reason}")
    if not problems:
        return ""
    return (
        f"master {master} does not accept connections (connect timeout {timeout:g} s): "
        + "; ".join(problems)
        + ". Start the master, or fix the backend's `master`"
    )


def main(argv: list[str]) -> int:
    master = os.environ.get(MASTER_ENV, "")
    if master:
        problem = unreachable_master(master, float(os.environ.get(TIMEOUT_ENV) or 10))
        if problem:
            print(f"{NOT_STARTED_LINE}{problem}", file=sys.stderr, flush=True)
            return UNREACHABLE_EXIT

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
