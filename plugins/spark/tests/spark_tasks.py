"""Module-level tasks and workflows of the tests (an out-of-process backend imports them by
module name)."""

from __future__ import annotations

import time
from typing import Annotated

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from taskfabric import Cache, task, workflow
from taskfabric.types import Columns
from taskfabric_spark import Spark, spark_session

Sales = Annotated[DataFrame, Columns(region=str, units=int, price=float)]
Revenue = Annotated[DataFrame, Columns(region=str, revenue=float)]
RevenuePandas = Annotated[pd.DataFrame, Columns(region=str, revenue=float)]


@task(config=Spark(conf={"spark.sql.shuffle.partitions": 3}))
def load_sales(days: int) -> Sales:
    rows = [("north", 3, 9.5), ("south", 5, 10.0), ("north", 2, 9.5), ("east", 7, 8.0)] * days
    frame = spark_session().createDataFrame(rows, "region string, units long, price double")
    return frame.repartition(3)


@task(config=Spark(conf={"spark.sql.shuffle.partitions": 2}))
def revenue(sales: Sales) -> Revenue:
    return sales.groupBy("region").agg(F.sum(F.col("units") * F.col("price")).alias("revenue"))


@task
def top_region(table: RevenuePandas) -> str:
    return str(table.sort_values("revenue").iloc[-1].region)


@workflow
def sales_report(days: int = 2) -> str:
    return top_region(table=revenue(sales=load_sales(days=days)))


@task(config=Spark())
def shuffle_partitions() -> str:
    return str(spark_session().conf.get("spark.sql.shuffle.partitions"))


@task(config=Spark(conf={"spark.sql.shuffle.partitions": 7}))
def shuffle_partitions_7() -> str:
    return str(spark_session().conf.get("spark.sql.shuffle.partitions"))


@workflow
def partitions() -> tuple[str, str]:
    return shuffle_partitions(), shuffle_partitions_7()


@task(config=Spark())
def bad_column(days: int) -> int:
    return spark_session().range(days).select("no_such_column").count()


@workflow
def analysis_error(days: int = 3) -> int:
    return bad_column(days=days)


def _divide(x: int) -> float:
    return 1 / (x - x)


@task(config=Spark())
def failing_udf(n: int) -> int:
    divide = F.udf(_divide, "double")
    return len(spark_session().range(n).select(divide("id")).collect())


@workflow
def udf_error(n: int = 4) -> int:
    return failing_udf(n=n)


@task(config=Spark())
def slow_job(seconds: int) -> int:
    def sleepy(x: int) -> int:
        time.sleep(seconds)
        return x

    return spark_session().sparkContext.parallelize(range(2), 2).map(sleepy).count()


@workflow
def slow(seconds: int = 60) -> int:
    return slow_job(seconds=seconds)


@task
def pandas_sales(days: int) -> Annotated[pd.DataFrame, Columns(region=str, units=int)]:
    return pd.DataFrame({"region": ["north", "south"] * days, "units": [1, 2] * days})


@task(config=Spark())
def count_units(sales: Annotated[DataFrame, Columns(region=str, units=int)]) -> int:
    return int(sales.agg(F.sum("units")).collect()[0][0])


@workflow
def pandas_to_spark(days: int = 3) -> int:
    return count_units(sales=pandas_sales(days=days))


@task(config=Spark())
def wrong_columns() -> Annotated[DataFrame, Columns(region=str, units=int)]:
    return spark_session().createDataFrame([("north", "three")], "region string, units string")


@workflow
def wrong_output() -> int:
    return count_units(sales=wrong_columns())


@task(config=Spark())
def shuffled_sales(days: int) -> Sales:
    """The same rows on every run, in another order and other part files (as a shuffle of a
    real job may give)."""
    rows = [("north", 3, 9.5), ("south", 5, 10.0), ("north", 2, 9.5), ("east", 7, 8.0)] * days
    frame = spark_session().createDataFrame(rows, "region string, units long, price double")
    return frame.orderBy(F.rand())


@task(config=Spark(), cache=Cache(version="1"))
def cached_units(sales: Sales) -> int:
    return int(sales.agg(F.sum("units")).first()[0])


@workflow
def cached_consumer(days: int = 3) -> int:
    return cached_units(sales=shuffled_sales(days=days))
