"""Workflows mixing Python and Flink tasks, for the integration tests."""

from __future__ import annotations

import time
from pathlib import Path

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import DataTypes, TableEnvironment
from pyflink.table.expressions import col, lit
from pyflink.table.udf import udf

from taskfabric import task, workflow
from taskfabric_flink import FROM_ATTEMPT, Flink, run_until_stopped, stream_env, table_env


@udf(result_type=DataTypes.DOUBLE())
def ratio(x: int) -> float:
    return x / (x - x)


@task(config=Flink(runtime_mode="BATCH"))
def ratios(n: int, t_env: TableEnvironment = FROM_ATTEMPT) -> list[float]:
    table = t_env.from_elements([(i,) for i in range(n)], ["x"])
    with table.select(ratio(col("x"))).execute().collect() as rows:
        return [row[0] for row in rows]


@workflow
def failing_udf(n: int = 3) -> list[float]:
    return ratios(n=n)


@task(config=Flink(runtime_mode="STREAMING"))
def doubled(values: list[int], env: StreamExecutionEnvironment = FROM_ATTEMPT) -> list[int]:
    """A list in by collection, a DataStream out: collected into the list output."""
    return env.from_collection(values).map(lambda v: v * 2)  # type: ignore[no-any-return]


@workflow
def doubling(values: list[int]) -> list[int]:
    return doubled(values=values)


def _word_counts(lines: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in lines:
        for word in line.split():
            counts[word] = counts.get(word, 0) + 1
    return counts


@task(config=Flink())
def datastream_example(output: str) -> bool:
    """PyFlink's own DataStream word count, unchanged: its counts must be the true ones."""
    from pyflink.examples.datastream import word_count as example

    example.word_count(None, output)
    counts: dict[str, int] = {}
    for part in Path(output).rglob("prefix*"):
        for line in part.read_text().splitlines():  # "(word,count)"
            word, _, count = line.strip("()").rpartition(",")
            counts[word] = int(count)
    return counts == _word_counts(example.word_count_data)


@task(config=Flink())
def table_example(output: str) -> bool:
    """PyFlink's own Table API word count, unchanged (a streaming job whose canal-json
    changelog is replayed here): its counts must be the true ones."""
    import json

    from pyflink.examples.table import word_count as example

    example.word_count(None, output)
    counts: dict[str, int] = {}
    for part in sorted(Path(output).rglob("*")):
        if not part.is_file() or part.name.startswith("."):
            continue
        for line in part.read_text().splitlines():
            change = json.loads(line)
            for row in change["data"]:
                if change["type"] == "INSERT":
                    counts[row["word"]] = row["count"]
                elif change["type"] == "DELETE" and counts.get(row["word"]) == row["count"]:
                    del counts[row["word"]]
    return counts == _word_counts(example.word_count_data)


@workflow
def examples(datastream_out: str, table_out: str) -> tuple[bool, bool]:
    return datastream_example(output=datastream_out), table_example(output=table_out)


@udf(result_type=DataTypes.BIGINT())
def wait_for_file(x: int, path: str) -> int:
    """Holds the job (in Flink's Python worker) until `path` exists."""
    while not Path(path).exists():
        time.sleep(0.1)
    return x


@task(config=Flink(runtime_mode="BATCH"))
def gated_job(runs: str, go: str) -> int:
    """Appends a line to `runs` each time the task's body runs, then runs a job that waits
    for the file `go`."""
    with Path(runs).open("a") as fh:
        fh.write("run\n")
    table = table_env().from_elements([(7,)], ["x"])
    held = table.select(wait_for_file(col("x"), lit(go)).alias("x"))
    with held.execute().collect() as rows:
        return sum(row[0] for row in rows)


@workflow
def gated(runs: str, go: str) -> int:
    return gated_job(runs=runs, go=go)


@task(config=Flink(runtime_mode="BATCH"))
def gated_sink(runs: str, go: str, out: str, t_env: TableEnvironment = FROM_ATTEMPT) -> None:
    """Like gated_job, but its job writes into files and the task returns nothing."""
    with Path(runs).open("a") as fh:
        fh.write("sink\n")
    t_env.execute_sql(
        "CREATE TABLE numbers_out (x BIGINT) WITH "
        f"('connector' = 'filesystem', 'path' = '{out}', 'format' = 'csv')"
    )
    table = t_env.from_elements([(7,)], ["x"])
    table.select(wait_for_file(col("x"), lit(go)).alias("x")).execute_insert("numbers_out").wait()


@workflow
def gated_pair(runs: str, go: str, out: str) -> int:
    gated_sink(runs=runs, go=go, out=out)
    return gated_job(runs=runs, go=go)


def _slowly(n: int) -> int:
    time.sleep(0.002)  # a few hundred records a second: small files, many checkpoints
    return n


@task(config=Flink(runtime_mode="STREAMING", parallelism=1, checkpoint_interval_ms=1000))
def numbers_to_files(out: str, env: StreamExecutionEnvironment = FROM_ATTEMPT) -> str:
    """An unbounded job (0, 1, 2, ... from a checkpointed source) into files committed
    exactly once on checkpoints, run until a stop request; returns its savepoint."""
    from pyflink.common import Encoder, Types, WatermarkStrategy
    from pyflink.datastream.connectors.file_system import FileSink, RollingPolicy
    from pyflink.datastream.connectors.number_seq import NumberSequenceSource

    source = NumberSequenceSource(0, 10**12)
    numbers = env.from_source(source, WatermarkStrategy.no_watermarks(), "numbers").uid("numbers")
    lines = numbers.map(_slowly, Types.LONG()).uid("slowly").map(str, Types.STRING()).uid("str")
    sink = (
        FileSink.for_row_format(out, Encoder.simple_string_encoder())
        .with_rolling_policy(RollingPolicy.on_checkpoint_rolling_policy())
        .build()
    )
    lines.sink_to(sink).uid("files")
    return run_until_stopped(env)


@workflow
def numbers_stream(out: str) -> str:
    return numbers_to_files(out=out)


@task(
    config=Flink(parallelism=3, checkpoint_interval_ms=2000, conf={"pipeline.max-parallelism": 64})
)
def environments(env: StreamExecutionEnvironment, n: int, t_env: TableEnvironment) -> list[str]:
    """The environments the task receives: the task's options over its backend's, and one
    table environment over the stream one (a stream becomes a table)."""
    config = t_env.get_config()  # the table options, over the environment's
    table = t_env.from_data_stream(env.from_collection(list(range(n))))
    with table.execute().collect() as rows:
        count = len(list(rows))
    return [
        str(env.get_parallelism()),
        str(env.get_checkpoint_interval()),
        str(env.get_max_parallelism()),
        config.get("pipeline.auto-watermark-interval", ""),
        config.get("execution.runtime-mode", ""),
        str(count),
        str(env is stream_env()),
    ]


@workflow
def received_environments(n: int = 5) -> list[str]:
    return environments(n=n)


@task(config=Flink(runtime_mode="BATCH", parallelism=1))
def gated_slot(i: int, runs: str, go: str) -> int:
    """A one-slot job that waits for the file `go`; appends a line to `runs` first."""
    with Path(runs).open("a") as fh:
        fh.write(f"{i}\n")
    table = table_env().from_elements([(i,)], ["x"])
    with table.select(wait_for_file(col("x"), lit(go)).alias("x")).execute().collect() as rows:
        return sum(row[0] for row in rows)


@task
def sum_of(a: int, b: int, c: int) -> int:
    return a + b + c


@workflow
def three_gated(runs: str, go: str) -> int:
    a = gated_slot(i=1, runs=runs, go=go)
    b = gated_slot(i=2, runs=runs, go=go)
    c = gated_slot(i=3, runs=runs, go=go)
    return sum_of(a=a, b=b, c=c)
