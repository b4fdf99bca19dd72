"""The `spark-submit` backend: each attempt is a Spark application, submitted with
`spark-submit` to a master (`spark://`, `k8s://`, `yarn`, `local[N]`), its driver running the
core's task entrypoint."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlparse

from pydantic import Field, field_validator

from taskfabric.backends import ProcessBackend, ProcessRun, describe_exit, tail
from taskfabric.core.v1 import tasks_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    BackendContext,
    BackendSettings,
    CheckResult,
    LogLink,
    PoolRequest,
    TaskAttempt,
)
from taskfabric_spark import _driver
from taskfabric_spark._config import merged_conf
from taskfabric_spark._errors import summarize_log
from taskfabric_spark._session import base_conf, check_java, java_env, spark_home
from taskfabric_spark._settings import SparkBackendSettings, pool_requests, task_config

__all__ = ["SparkSubmitBackend", "SparkSubmitSettings"]

log = get_logger("taskfabric.spark")

_MASTER = re.compile(r"^(spark://\S+|k8s://\S+|yarn|local(\[(\d+|\*)(,\d+)?\])?)$")
_APP_ID = re.compile(re.escape(_driver.APP_LINE) + r"(\S+)")
_TAIL_LINES = 15


class SparkSubmitSettings(SparkBackendSettings):
    """`[backends.<name>]` of driver `spark-submit` (a target of `targets` may set any)."""

    #: Where applications go: `spark://host:7077`, `k8s://https://...`, `yarn`, `local[N]`.
    master: str
    #: The standalone master's web UI (`http://host:8080`): `plugins check` asks it for live
    #: workers, attempts link to their application page, and a cancel also kills the
    #: application there.
    master_webui: str = ""
    #: The spark-submit command; default: the one of the installed pyspark.
    spark_submit: str = ""
    #: The Python of the driver and the executors (PYSPARK_PYTHON); default: the engine's.
    python: str = ""
    #: Extra environment variables of spark-submit and the driver.
    env: dict[str, str] = Field(default_factory=dict)
    #: Extra spark-submit arguments, e.g. ["--packages", "org.apache.hadoop:hadoop-aws:3.4.1"].
    submit_args: list[str] = Field(default_factory=list)
    #: Seconds between SIGTERM and SIGKILL when an attempt is cancelled or times out.
    kill_grace_seconds: float = Field(default=10.0, ge=0)
    #: Seconds the driver waits for a standalone master (`spark://`) to accept a connection
    #: before it fails the attempt, instead of Spark's own minute of registration retries.
    connect_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("master")
    @classmethod
    def _check_master(cls, master: str) -> str:
        if not _MASTER.match(master):
            raise ValueError(
                f"master {master!r} is not a Spark master URL: write spark://HOST:PORT, "
                "k8s://https://HOST:PORT, yarn or local[N]"
            )
        return master

    @field_validator("master_webui")
    @classmethod
    def _check_webui(cls, url: str) -> str:
        if url and urlparse(url).scheme not in ("http", "https"):
            raise ValueError(f"master_webui {url!r} is not an http(s) URL")
        return url.rstrip("/")


def application_id(log_path: Path) -> str:
    """The application id that the driver wrote to its log, or ''."""
    try:
        with log_path.open("rb") as fh:
            head = fh.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return ""
    match = _APP_ID.search(head)
    return match.group(1) if match else ""


class SparkSubmitBackend(ProcessBackend[SparkSubmitSettings]):
    """Runs each attempt as a Spark application: `spark-submit --master M --deploy-mode client
    taskfabric_spark/_driver.py ...` in its own process group.

    The driver runs `taskfabric-execute`, so the task's outputs, or its error document, land
    in the blob store like any out-of-process attempt's. The driver log is saved to the blob
    store next to the node's outputs and linked from the attempt (with the application's page
    on the master's web UI when `master_webui` is set). Cancelling an attempt stops the driver
    (SIGTERM, then SIGKILL), which ends the application; with `master_webui` the master is
    also told to kill it.
    """

    driver: ClassVar[str] = "spark-submit"
    settings_model: ClassVar[type[BackendSettings]] = SparkSubmitSettings
    log_name: ClassVar[str] = "driver.log"

    def __init__(self, name: str, settings: SparkSubmitSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)
        self.python = settings.python or sys.executable

    # -- submitting --------------------------------------------------------------------

    def spark_submit(self) -> str:
        return self.settings.spark_submit or str(spark_home() / "bin" / "spark-submit")

    def command(self, attempt: TaskAttempt, template_uri: str, work_dir: Path) -> list[str]:
        settings = self.settings
        conf = {
            **base_conf(settings.driver_host),
            "spark.pyspark.python": self.python,
            "spark.pyspark.driver.python": self.python,
            # Tables a task saves without a path go to its own work folder, not the cwd.
            "spark.sql.warehouse.dir": str(work_dir / "spark-warehouse"),
            **merged_conf(settings.spark_conf(), task_config(self.context, attempt.task)),
        }
        name = f"taskfabric-{attempt.task.id.name}-{attempt.execution_id}-{attempt.node_id}"
        command = [
            self.spark_submit(),
            "--master", settings.master,
            "--deploy-mode", "client",
            "--name", f"{name}-{attempt.attempt}",
        ]  # fmt: skip
        for key, value in sorted(conf.items()):
            command += ["--conf", f"{key}={value}"]
        command += [*settings.submit_args, str(Path(_driver.__file__).resolve())]
        return command + self.execute_args(attempt, template_uri, work_dir)

    def environment(self) -> dict[str, str]:
        env = java_env(self.settings.java_home, self.settings.env)
        env["SPARK_LOCAL_IP"] = self.settings.driver_host
        env["PYSPARK_PYTHON"] = self.python
        env["PYSPARK_DRIVER_PYTHON"] = self.python
        env[_driver.MASTER_ENV] = self.settings.master
        env[_driver.TIMEOUT_ENV] = str(self.settings.connect_timeout_seconds)
        return self.with_task_path(env)

    def launch_error(self, attempt: TaskAttempt, exc: Exception) -> AttemptStatus | None:
        return AttemptStatus(
            AttemptPhase.FAILED,
            error=AttemptError(
                "SparkSubmitError",
                f"backend '{self.name}' cannot run {self.spark_submit()}: {exc}",
                kind="system",
                retryable=False,
            ),
        )

    # -- ending ------------------------------------------------------------------------

    def running_links(self, run: ProcessRun) -> list[LogLink]:
        """The driver log as it is written, while the application runs."""
        return [LogLink("spark-driver", run.log_path.as_uri())]

    def log_links(self, run: ProcessRun) -> list[LogLink]:
        """The driver log, saved to the blob store, and the application's page."""
        attempt = run.attempt
        key = attempt.node_id.replace("[", "/").replace("]", "")
        uri = self.context.store.uri(
            "executions", attempt.execution_id, "nodes", key, f"spark-driver-{attempt.attempt}.log"
        )
        links: list[LogLink] = []
        try:
            self.context.store.put_file(run.log_path, uri)
            links.append(LogLink("spark-driver", uri))
        except Exception as exc:  # the attempt's outcome matters more than its log
            log.warning("cannot save the driver log", path=str(run.log_path), error=str(exc))
            links.append(LogLink("spark-driver", run.log_path.as_uri()))
        app_id = application_id(run.log_path)
        if app_id and self.settings.master_webui:
            links.append(LogLink("spark-app", f"{self.settings.master_webui}/app/?appId={app_id}"))
        return links

    def crash_error(self, run: ProcessRun, code: int | None) -> AttemptError:
        """Spark's own exception line from the driver log, not the whole stack."""
        text = ""
        with contextlib.suppress(OSError):
            text = run.log_path.read_text("utf-8", "replace")
        summary = summarize_log(text)
        for line in text.splitlines():
            if line.startswith(_driver.NOT_STARTED_LINE):
                return AttemptError(
                    "SparkMasterUnreachable",
                    line.removeprefix(_driver.NOT_STARTED_LINE),
                    kind="system",
                    retryable=True,
                )
        how = (
            "exited with code 0 without writing its outputs"
            if code == 0
            else describe_exit(code)
            if code is not None
            else "ended without writing its outputs or an error document"
        )
        message = f"the Spark application (spark-submit to {self.settings.master}) {how}"
        if summary:
            message += f": {summary}"
        return AttemptError(
            "SparkApplicationFailed",
            message,
            kind="system",
            retryable=True,
            traceback=f"last lines of the driver log:\n{tail(run.log_path, _TAIL_LINES)}",
        )

    def after_kill(self, run: ProcessRun) -> None:
        """The driver is gone (SIGTERM ran the JVM's shutdown hook, which stops the
        SparkContext and unregisters the application); with a web UI the master is also told
        to kill the application, in case the driver died before it could."""
        app_id = application_id(run.log_path)
        if app_id and self.settings.master_webui:
            self._kill_on_master(app_id)

    def _kill_on_master(self, app_id: str) -> None:
        url = f"{self.settings.master_webui}/app/kill/"
        data = f"id={app_id}&terminate=true".encode()
        try:
            with urllib.request.urlopen(url, data=data, timeout=10):
                pass
        except (urllib.error.URLError, OSError) as exc:
            log.debug("master did not take the kill", app_id=app_id, error=str(exc))

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        return pool_requests(self.settings, self.context, task)

    # -- checking ----------------------------------------------------------------------

    def check(self) -> CheckResult:
        java = check_java(self.settings.java_home)
        if not java.ok:
            return CheckResult(False, f"backend '{self.name}': {java.message}")
        submit = self.spark_submit()
        if shutil.which(submit) is None:
            return CheckResult(False, f"spark-submit not found at {submit}: set `spark_submit`")
        master = self.settings.master
        reached = ""
        if self.settings.master_webui:
            try:
                with urllib.request.urlopen(f"{self.settings.master_webui}/json/", timeout=10) as r:
                    state = json.loads(r.read())
            except (urllib.error.URLError, OSError, ValueError) as exc:
                return CheckResult(
                    False,
                    f"the master's web UI {self.settings.master_webui} does not answer: {exc}",
                )
            alive = [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]
            if state.get("status") != "ALIVE" or not alive:
                return CheckResult(
                    False,
                    f"master {master} is {state.get('status')} with {len(alive)} live workers: "
                    "applications would wait forever",
                )
            reached = f"; {len(alive)} live workers, {state.get('cores', '?')} cores"
        elif master.startswith("spark://"):
            host, _, port = master.removeprefix("spark://").split(",")[0].partition(":")
            try:
                socket.create_connection((host, int(port or 7077)), timeout=10).close()
            except (OSError, ValueError) as exc:
                return CheckResult(False, f"master {master} does not accept connections: {exc}")
            reached = "; the master accepts connections"
        return CheckResult(True, f"{submit} to {master}{reached}; {java.message}")
