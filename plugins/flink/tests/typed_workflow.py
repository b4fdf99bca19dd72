"""A workflow of flink tasks that take their environments, for `test_typing.py`: mypy --strict
accepts it as users write it (the workflow passes the inputs only)."""

from __future__ import annotations

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import TableEnvironment

from taskfabric import task, workflow
from taskfabric_flink import FROM_ATTEMPT, Flink


@task(config=Flink(runtime_mode="BATCH"))
def squares(n: int, t_env: TableEnvironment = FROM_ATTEMPT) -> list[int]:
    table = t_env.from_elements([(i * i,) for i in range(n)], ["x"])
    with table.execute().collect() as rows:
        return [int(row[0]) for row in rows]


@task(config=Flink(parallelism=2))
def total(
    values: list[int],
    *,
    env: StreamExecutionEnvironment = FROM_ATTEMPT,
    t_env: TableEnvironment = FROM_ATTEMPT,
) -> int:
    stream = env.from_collection(values)
    with t_env.from_data_stream(stream).execute().collect() as rows:
        return sum(int(row[0]) for row in rows)


@workflow
def sum_of_squares(n: int = 4) -> int:
    return total(values=squares(n=n))
