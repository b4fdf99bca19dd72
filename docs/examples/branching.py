# docs/examples/branching.py
from taskfabric import conditional, task, workflow


@task
def row_count(table: str) -> int:
    return {"events": 2_500_000, "users": 40_000, "empty": 0}.get(table, -1)


@task
def spark_job(table: str) -> str:
    return f"{table}: processed on the cluster"


@task
def pandas_job(table: str) -> str:
    return f"{table}: processed in memory"


@workflow
def process(table: str, force_cluster: bool = False) -> str:
    rows = row_count(table=table)
    return (
        conditional("engine")
        .if_((rows > 1_000_000) | force_cluster.is_true())
        .then(spark_job(table=table))
        .elif_((rows > 0) & (rows <= 1_000_000))
        .then(pandas_job(table=table))
        .else_()
        .fail("the table is empty or unknown")
    )
