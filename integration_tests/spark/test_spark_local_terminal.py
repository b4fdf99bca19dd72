"""What a user sees on the terminal when a Spark task fails on spark-local: the summary of the
Python exception, not Spark's Java stack; the details are in the Spark log file."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

_JAVA_FRAME = re.compile(r"^\s+at [\w$.]+\(", re.MULTILINE)


def test_a_udf_error_on_spark_local_prints_the_summary_not_the_java_stack(
    tmp_path: Path,
) -> None:
    shutil.copy(Path(__file__).parent / "spark_jobs.py", tmp_path / "spark_jobs.py")
    config = tmp_path / "taskfabric.toml"
    config.write_text(
        f'[storage]\ndata_root = "{tmp_path / "data"}"\n\n[task_types]\nspark = "local"\n\n'
        '[backends.local]\ndriver = "spark-local"\ncores = 1\n',
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "TASKFABRIC_CONFIG": str(config),
        "TASKFABRIC_HOME": str(tmp_path / "home"),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "COLUMNS": "200",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", "run", "spark_jobs.py:failing_job", "--n", "3"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    terminal = proc.stdout + proc.stderr
    assert proc.returncode == 1, terminal
    summary = "PythonException: a Python worker raised ZeroDivisionError: division by zero"
    assert summary in proc.stderr, terminal
    # Every mention of the worker's exception is the summary: Spark's own message (the
    # worker's traceback inside a Java exception) and its Java stack are not printed.
    assert terminal.count("ZeroDivisionError") == terminal.count(summary), terminal
    assert "An exception was thrown from the Python worker" not in terminal, terminal
    assert _JAVA_FRAME.search(terminal) is None, terminal
    assert "org.apache.spark" not in terminal, terminal
    # The details are in the Spark log.
    spark_log = (tmp_path / "data" / "logs" / "spark-local-local.log").read_text("utf-8")
    assert "An exception was thrown from the Python worker" in spark_log
    assert _JAVA_FRAME.search(spark_log) is not None
