"""The parts that need no running Spark: the task config and backend settings, Java checks,
error summaries, and the column checks the compiler does with Spark DataFrame types."""

from __future__ import annotations

import socket
import stat
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import pytest
from pydantic import ValidationError
from pyspark.sql import DataFrame

from taskfabric import task, workflow
from taskfabric.errors import TaskDefinitionError
from taskfabric.plugins import Plugins
from taskfabric.types import Columns, default_engine, type_str
from taskfabric_spark import Spark, check_java
from taskfabric_spark._driver import unreachable_master
from taskfabric_spark._errors import summarize_log
from taskfabric_spark._submit_backend import SparkSubmitSettings


def test_config_merges_shortcuts_over_conf_and_round_trips_as_proto() -> None:
    config = Spark(
        conf={"spark.sql.shuffle.partitions": 8, "spark.executor.memory": "1g", "spark.x": True},
        executor_memory="2g",
        executor_instances=3,
    )
    assert config.spark_conf() == {
        "spark.sql.shuffle.partitions": "8",
        "spark.executor.memory": "2g",
        "spark.x": "true",
        "spark.executor.instances": "3",
    }
    assert Spark.from_proto(config.to_proto()) == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf": {"shuffle.partitions": 8}}, "Spark properties start with 'spark.'"),
        ({"conf": {"spark.master": "local[2]"}}, "cannot be set here: the backend's `master`"),
        (
            {"conf": {"spark.jars": ["a.jar", "b.jar"]}},
            "conf['spark.jars'] is a list: Spark properties are strings, numbers or booleans "
            "(a list property is one string: join its items with commas, e.g. 'a,b')",
        ),
        ({"executor_memory": "two gigs"}, "executor_memory='two gigs' is not a Spark size"),
        ({"executor_instances": 0}, "executor_instances: Input should be greater than or equal"),
        ({"executr_memory": "1g"}, "Spark() has no argument 'executr_memory'; its arguments are"),
    ],
)
def test_bad_config_names_the_task_its_file_and_line_the_key_and_the_fix(
    kwargs: dict[str, object], message: str
) -> None:
    line = sys._getframe().f_lineno + 3
    with pytest.raises(TaskDefinitionError) as raised:

        @task(config=Spark(**kwargs))  # type: ignore[arg-type]
        def daily_totals() -> int:
            return 0

    text = str(raised.value)
    assert text.startswith(f"{__file__}:{line}: task '"), text
    assert "daily_totals': " in text
    assert message in text


def test_an_invalid_config_cannot_be_used_outside_a_task() -> None:
    bad = Spark(conf={"spark.jars": ["a.jar"]})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"conf\['spark.jars'\] is a list"):
        bad.to_proto()
    with pytest.raises(ValueError, match=r"conf\['spark.jars'\] is a list"):
        bad.spark_conf()


def test_submit_settings_reject_a_bad_master_url() -> None:
    with pytest.raises(ValidationError, match="is not a Spark master URL: write spark://HOST"):
        SparkSubmitSettings(master="127.0.0.1:7077")
    assert SparkSubmitSettings(master="local[2]").master == "local[2]"
    assert SparkSubmitSettings(master="k8s://https://10.0.0.1:6443").master.startswith("k8s")


def _fake_java(folder: Path, version_line: str) -> Path:
    home = folder / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n", encoding="utf-8")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def test_java_check_names_a_missing_or_wrong_java(tmp_path: Path) -> None:
    missing = check_java(str(tmp_path / "nowhere"))
    assert not missing.ok
    assert "no `java` found on JAVA_HOME=" in missing.message
    assert "openjdk-17-jre-headless" in missing.message
    old = check_java(str(_fake_java(tmp_path, 'openjdk version "11.0.2" 2019-01-15')))
    assert not old.ok
    assert "is Java 11, but pyspark 4 needs Java 17 or 21" in old.message
    eight = check_java(str(_fake_java(tmp_path / "8", 'java version "1.8.0_392"')))
    assert "is Java 8" in eight.message
    real = check_java()
    assert real.ok, real.message


def test_driver_log_summary_is_the_exception_not_the_stack() -> None:
    log = "\n".join(
        [
            "26/11/27 04:17:34 INFO SparkContext: Running Spark version 4.3.0",
            'Exception in thread "main" org.apache.spark.SparkException: Cannot load main class',
            "\tat org.apache.spark.deploy.SparkSubmit.doRunMain(SparkSubmit.scala:1)",
        ]
        + ["\tat some.Frame(Frame.java:1)"] * 200
    )
    assert summarize_log(log) == (
        'Exception in thread "main" org.apache.spark.SparkException: Cannot load main class'
    )
    python = "Traceback (most recent call last):\n  File \"x.py\", line 1\nKeyError: 'k'\n"
    assert summarize_log("noise\n" + python) == "KeyError: 'k'"


Sales = Annotated[DataFrame, Columns(region=str, units=int)]


@task(config=Spark())
def spark_sales() -> Sales: ...


@task
def wants_price(t: Annotated[pd.DataFrame, Columns(price=float)]) -> int:
    return len(t)


@task
def wants_units(t: Annotated[pd.DataFrame, Columns(units=int)]) -> int:
    return len(t)


def test_spark_dataframe_types_carry_columns_and_are_checked_by_the_compiler(
    plugins: Plugins,
) -> None:
    literal_type = default_engine().literal_type(Sales)
    assert type_str(literal_type) == "DataFrame[parquet]{region: str, units: int}"

    @workflow
    def fits() -> int:
        return wants_units(t=spark_sales())

    fits.compile()

    @workflow
    def misses() -> int:
        return wants_price(t=spark_sales())

    with pytest.raises(Exception, match="price"):
        misses.compile()


def test_driver_log_summary_of_an_unreachable_master_names_the_cause() -> None:
    log = "\n".join(
        [
            "26/12/03 09:00:01 INFO StandaloneAppClient$ClientEndpoint: Connecting to master "
            "spark://127.0.0.1:1...",
            "26/12/03 09:00:01 WARN StandaloneAppClient$ClientEndpoint: Failed to connect to "
            "master 127.0.0.1:1",
            "org.apache.spark.SparkException: Exception thrown in awaitResult:",
            "26/12/03 09:01:01 ERROR StandaloneSchedulerBackend: Application has been killed. "
            "Reason: All masters are unresponsive! Giving up.",
            "Traceback (most recent call last):",
            '  File "_driver.py", line 25, in main',
            "py4j.protocol.Py4JJavaError: An error occurred while calling "
            "None.org.apache.spark.api.java.JavaSparkContext.",
        ]
    )
    summary = summarize_log(log)
    assert summary.startswith("py4j.protocol.Py4JJavaError: An error occurred"), summary
    assert "Failed to connect to master 127.0.0.1:1" in summary
    assert "All masters are unresponsive! Giving up." in summary


def test_the_driver_names_a_master_that_does_not_accept_connections() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    problem = unreachable_master(f"spark://127.0.0.1:{port}", 5)
    assert problem.startswith(f"master spark://127.0.0.1:{port} does not accept connections")
    assert "Connection refused" in problem
    assert unreachable_master("local[2]", 5) == ""
