# docs/examples/dataframes.py
from typing import Annotated

import pandas as pd

from taskfabric import task, workflow
from taskfabric.types import Columns

Sales = Annotated[pd.DataFrame, Columns(region=str, units=int, price=float)]
Revenue = Annotated[pd.DataFrame, Columns(region=str, revenue=float)]


@task
def load_sales(days: int) -> Sales:
    return pd.DataFrame(
        {
            "region": ["north", "south", "north", "east"] * days,
            "units": [3, 5, 2, 7] * days,
            "price": [9.5, 10.0, 9.5, 8.0] * days,
            "note": ["ok"] * (4 * days),  # extra columns are kept when written
        }
    )


@task
def revenue(sales: Sales) -> Revenue:
    # only the declared columns are read: `note` is not in `sales` here
    totals = (sales.units * sales.price).groupby(sales.region).sum()
    return totals.rename("revenue").reset_index()


@task
def top_region(table: Revenue) -> str:
    return str(table.sort_values("revenue").iloc[-1].region)


@workflow
def sales_report(days: int = 2) -> str:
    return top_region(table=revenue(sales=load_sales(days=days)))
