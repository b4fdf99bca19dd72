"""Spark tasks that fail or run long, for the integration tests."""

from __future__ import annotations

import time

from pyspark.sql import functions as F

from taskfabric import task, workflow
from taskfabric_spark import Spark, spark_session


def _ratio(x: int) -> float:
    return x / (x - x)


@task(config=Spark())
def ratios(n: int) -> int:
    ratio = F.udf(_ratio, "double")
    return len(spark_session().range(n).select(ratio("id")).collect())


@workflow
def failing_job(n: int = 4) -> int:
    return ratios(n=n)


def _sleepy(x: int) -> int:
    time.sleep(600)
    return x


@task(config=Spark())
def long_job(marker: str) -> int:
    from pathlib import Path

    Path(marker).write_text(spark_session().sparkContext.applicationId)
    return spark_session().sparkContext.parallelize(range(2), 2).map(_sleepy).count()


@workflow
def long_running(marker: str) -> int:
    return long_job(marker=marker)


@task(config=Spark())
def gated_app(runs: str, go: str) -> str:
    """Appends its application id to `runs`, waits for the file `go`, runs a job, returns
    the application id."""
    from pathlib import Path

    app_id = spark_session().sparkContext.applicationId
    with Path(runs).open("a") as fh:
        fh.write(app_id + "\n")
    while not Path(go).exists():
        time.sleep(0.1)
    assert spark_session().range(5).count() == 5
    return app_id


@workflow
def gated(runs: str, go: str) -> str:
    return gated_app(runs=runs, go=go)
