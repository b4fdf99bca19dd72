# integration_tests/spark/spark_sales.py
from typing import Annotated

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from taskfabric import task, workflow
from taskfabric.types import Columns
from taskfabric_spark import Spark, spark_session

Sales = Annotated[DataFrame, Columns(region=str, units=int, price=float)]
Revenue = Annotated[DataFrame, Columns(region=str, revenue=float)]


@task(config=Spark(executor_memory="512m", conf={"spark.sql.shuffle.partitions": 2}))
def load_sales(days: int) -> Sales:
    rows = [("north", 3, 9.5), ("south", 5, 10.0), ("north", 2, 9.5), ("east", 7, 8.0)]
    spark = spark_session()
    return spark.createDataFrame(rows * days, "region string, units long, price double")


@task(config=Spark(executor_memory="512m"))
def revenue(sales: Sales) -> Revenue:
    totals = sales.groupBy("region").agg(F.sum(sales.units * sales.price).alias("revenue"))
    return totals.repartition(2)  # written as two parquet part files, in parallel


@task  # a plain Python task reads the Spark output as pandas
def top_region(table: Annotated[pd.DataFrame, Columns(region=str, revenue=float)]) -> str:
    return str(table.sort_values("revenue").iloc[-1].region)


@workflow
def sales_report(days: int = 2) -> str:
    return top_region(table=revenue(sales=load_sales(days=days)))
