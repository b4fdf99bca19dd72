"""The spark-local backend: Spark tasks in the engine's process on one local-mode context,
DataFrames between Spark and pandas tasks, per-task properties, summarized Spark errors, and
`taskfabric plugins check`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import spark_tasks as st
from spark_engines import make_engine

from taskfabric.engine import Engine
from taskfabric.plugins import Plugins
from taskfabric_spark.examples import pyspark_examples

BACKENDS = {"spark-local": {"driver": "spark-local", "options": {"cores": 2}}}


@pytest.fixture
def engine(plugins: Plugins, tmp_path: Path) -> Engine:
    return make_engine(plugins, tmp_path / "data", backends=BACKENDS)


def test_dataframes_flow_from_spark_to_spark_to_pandas(engine: Engine) -> None:
    result = engine.launch(st.sales_report, {"days": 2})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(st.sales_report, engine.store) == "east"
    attempts = engine.metadata.attempts(result.execution_id)
    assert [(a.node_id, a.backend) for a in attempts] == [
        ("n0", "spark-local"),
        ("n1", "spark-local"),
        ("n2", "local"),
    ]


def test_a_cached_consumer_of_a_spark_dataframe_hits_on_the_second_run(engine: Engine) -> None:
    runs = [engine.launch(st.cached_consumer, {"days": 40}) for _ in range(2)]
    for result in runs:
        assert result.phase == "SUCCEEDED", result.error
        assert result.python_outputs(st.cached_consumer, engine.store) == 17 * 40
    status = [
        {n.node_id: n.cache_status for n in engine.metadata.nodes(r.execution_id)} for r in runs
    ]
    assert status == [{"n0": "disabled", "n1": "written"}, {"n0": "disabled", "n1": "hit"}]


def test_the_data_hash_depends_on_the_rows_not_their_order(engine: Engine, tmp_path: Path) -> None:
    from taskfabric_spark._dataframe import _data_hash
    from taskfabric_spark._session import session_for_values

    spark = session_for_values()

    def data_hash(rows: list[tuple[str | None, str | None]], parts: int) -> str | None:
        path = str(tmp_path / f"t{len(list(tmp_path.iterdir()))}")
        spark.createDataFrame(rows, "a string, b string").repartition(parts).write.parquet(path)
        return _data_hash(spark, path)

    rows = [("x", "1"), ("y", "2"), (None, "3"), ("z", None)]
    first = data_hash(rows, 1)
    assert first is not None and first.startswith("sha256:")
    assert data_hash(list(reversed(rows)), 3) == first
    assert data_hash([*rows[:3], ("z", "4")], 1) != first
    assert data_hash([*rows[:3], (None, "z")], 1) != first  # where a null is counts
    assert data_hash(rows + rows[:1], 1) != first  # so does a repeated row


def test_pyspark_example_programs_run_unchanged(engine: Engine) -> None:
    result = engine.launch(pyspark_examples, {"partitions": 2})
    assert result.phase == "SUCCEEDED", result.error
    pi, words, numbers = result.python_outputs(pyspark_examples, engine.store)
    assert pi.startswith("Pi is roughly 3."), pi
    assert "to: 3" in words.splitlines() and "be: 2" in words.splitlines(), words
    assert numbers.split() == ["-2", "4", "30", "100"], numbers
    # Their spark.stop() left the context the backend shares: the next Spark task runs on it.
    after = engine.launch(st.sales_report, {"days": 1})
    assert after.phase == "SUCCEEDED", after.error


def test_pandas_output_is_read_as_a_spark_dataframe(engine: Engine) -> None:
    result = engine.launch(st.pandas_to_spark, {"days": 3})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(st.pandas_to_spark, engine.store) == 9


def test_each_attempt_has_its_own_runtime_properties(engine: Engine) -> None:
    result = engine.launch(st.partitions, {})
    assert result.phase == "SUCCEEDED", result.error
    assert result.python_outputs(st.partitions, engine.store) == ("200", "7")


def test_analysis_error_is_summarized(engine: Engine) -> None:
    result = engine.launch(st.analysis_error, {"days": 3})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "AnalysisException"
    message = result.error["message"]
    assert message.startswith("[UNRESOLVED_COLUMN.WITH_SUGGESTION]"), message
    assert "`no_such_column` cannot be resolved" in message
    assert "\n" not in message and "Project" not in message  # no query plan, no stack


def test_output_that_misses_a_declared_column_fails_clearly(
    plugins: Plugins, tmp_path: Path
) -> None:
    engine = make_engine(plugins, tmp_path / "data", backends=BACKENDS)
    result = engine.launch(st.wrong_output, {})
    assert result.phase == "FAILED"
    assert result.error is not None
    assert result.error["code"] == "OutputTypeError"
    assert (
        "at ['units']: expected a column of int, got a column of Spark type string"
        in (result.error["message"])
    ), result.error


def _plugins_check(tmp_path: Path, backend: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        textwrap.dedent(f"""\
            [storage]
            data_root = "{tmp_path / "data"}"

            [task_types]
            spark = "spark"

            [backends.spark]
            {backend}
            """),
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "--config", str(config), "plugins", "check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_plugins_check_says_java_is_missing(tmp_path: Path) -> None:
    proc = _plugins_check(tmp_path, f'driver = "spark-local"\njava_home = "{tmp_path}/no-jdk"')
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "no `java` found on JAVA_HOME=" in output, output
    assert "openjdk-17-jre-headless" in output


def test_plugins_check_passes_with_java_17(tmp_path: Path) -> None:
    proc = _plugins_check(tmp_path, 'driver = "spark-local"\ncores = 1')
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "local[1] mode" in output and "is Java 17" in output, output


def test_plugins_check_rejects_bad_settings(tmp_path: Path) -> None:
    proc = _plugins_check(
        tmp_path,
        'driver = "spark-submit"\nmaster = "10.0.0.1:7077"\nconf = { "executor.memory" = "1g" }',
    )
    output = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
    assert proc.returncode != 0, output
    assert "is not a Spark master URL" in output, output
    assert "Spark properties start with 'spark.'" in output, output
