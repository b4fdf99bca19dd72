# integration_tests/flink/flink_orders.py
"""A workflow that passes a dataframe from a Python task through Flink and back."""

from __future__ import annotations

from typing import Annotated

import pandas as pd
from pyflink.table import DataTypes, Table
from pyflink.table.expressions import col
from pyflink.table.udf import udf

from taskfabric import task, workflow
from taskfabric.types import Columns
from taskfabric_flink import Flink

Orders = Annotated[pd.DataFrame, Columns(region=str, amount=float)]
Totals = Annotated[Table, Columns(region=str, total=float, orders=int)]


@task
def make_orders(n: int) -> Orders:
    regions = ["east", "west", "north"]
    return pd.DataFrame(
        {
            "region": [regions[i % 3] for i in range(n)],
            "amount": [float(i) for i in range(n)],
        }
    )


@udf(result_type=DataTypes.DOUBLE())
def with_tax(amount: float) -> float:
    return amount * 1.25


@task(config=Flink(parallelism=2, runtime_mode="BATCH"))
def region_totals(orders: Annotated[Table, Columns(region=str, amount=float)]) -> Totals:
    """A Python UDF (run by Flink's Python workers) and an aggregate, in one batch job."""
    taxed = orders.select(col("region"), with_tax(col("amount")).alias("amount"))
    return taxed.group_by(col("region")).select(
        col("region"),
        col("amount").sum.alias("total"),
        col("amount").count.cast(DataTypes.BIGINT()).alias("orders"),
    )


@task
def top_region(totals: pd.DataFrame) -> str:
    best = totals.sort_values("total", ascending=False).iloc[0]
    return f"{best['region']}:{best['total']:.2f}:{int(best['orders'])}"


@workflow
def orders_report(n: int = 9) -> str:
    return top_region(totals=region_totals(orders=make_orders(n=n)))
