"""The `spark-local` backend: Spark tasks in worker threads of the engine's process, on one
local-mode SparkContext (`local[N]`) that it starts on first use."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from pydantic import Field

from taskfabric.backends import ThreadBackend
from taskfabric.core.v1 import tasks_pb2
from taskfabric.logs import get_logger
from taskfabric.plugin_api import (
    AttemptError,
    AttemptPhase,
    AttemptStatus,
    BackendContext,
    BackendSettings,
    CheckResult,
    PoolRequest,
    TaskAttempt,
)
from taskfabric_spark._config import merged_conf
from taskfabric_spark._session import (
    apply_runtime_conf,
    base_conf,
    check_java,
    get_or_create,
    set_current_session,
)
from taskfabric_spark._settings import SparkBackendSettings, pool_requests, task_config

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["SparkLocalBackend", "SparkLocalSettings"]

log = get_logger("taskfabric.spark")


class SparkLocalSettings(SparkBackendSettings):
    """`[backends.<name>]` of driver `spark-local`."""

    #: Cores of the local-mode context, `local[N]`; default: every core (`local[*]`).
    cores: int | None = Field(default=None, ge=1)
    #: Attempts running at once; default: the engine's parallelism.
    workers: int | None = Field(default=None, ge=1)


class SparkLocalBackend(ThreadBackend[SparkLocalSettings]):
    """Runs Spark tasks in threads of the engine's process on a shared local-mode context.

    Each attempt gets its own `SparkSession` (`newSession()`: its own SQL properties and
    temporary views) over the one SparkContext a JVM can hold. A task's runtime properties
    (`spark.sql.*`) apply to its attempt; properties fixed when the context started
    (`spark.executor.memory`, `spark.driver.memory`, ...) come from the backend's `conf`, and a
    task asking for other values gets a warning in the log: use `spark-submit` for those.
    Cancelling an attempt cancels its Spark jobs; its Python code runs on to its end.
    """

    driver: ClassVar[str] = "spark-local"
    settings_model: ClassVar[type[BackendSettings]] = SparkLocalSettings

    def __init__(self, name: str, settings: SparkLocalSettings, context: BackendContext) -> None:
        super().__init__(name, settings, context)  # `workers` threads run the attempts
        self.spark_settings = settings
        self._start_lock = threading.Lock()
        self._base: SparkSession | None = None

    @property
    def master(self) -> str:
        return f"local[{self.spark_settings.cores or '*'}]"

    def _base_session(self) -> SparkSession:
        with self._start_lock:
            if self._base is None:
                java = check_java(self.spark_settings.java_home)
                if not java.ok:
                    raise RuntimeError(java.message)
                conf = {
                    **base_conf(self.spark_settings.driver_host),
                    "spark.sql.warehouse.dir": str(self.context.work_root / "spark-warehouse"),
                    **self.spark_settings.spark_conf(),
                }
                # The JVM starts with this process's environment.
                if self.spark_settings.java_home:
                    os.environ["JAVA_HOME"] = self.spark_settings.java_home
                os.environ.setdefault("SPARK_LOCAL_IP", self.spark_settings.driver_host)
                os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
                self._base = get_or_create(self.master, conf, f"taskfabric-{self.name}")
                log.info("spark-local context started", backend=self.name, master=self.master)
            return self._base

    def run_attempt(self, attempt: TaskAttempt) -> AttemptStatus:
        try:
            base = self._base_session()
        except Exception as exc:
            return AttemptStatus(
                AttemptPhase.FAILED,
                error=AttemptError(
                    "SparkStartError",
                    f"backend '{self.name}' (spark-local) cannot start Spark: {exc}",
                    kind="system",
                    retryable=False,
                ),
            )
        session = base.newSession()
        try:
            config = task_config(self.context, attempt.task)
        except Exception:  # the core reports an unreadable config itself
            config = None
        ignored = apply_runtime_conf(session, merged_conf({}, config))
        if ignored:
            log.warning(
                "Spark properties of the task ignored: the spark-local context started with "
                "other values (set them in the backend's conf, or use spark-submit)",
                task=attempt.task.id.name,
                keys=ignored,
            )
        set_current_session(session)
        try:
            return super().run_attempt(attempt)
        finally:
            set_current_session(None)

    def pool_requests(self, task: tasks_pb2.TaskTemplate) -> Sequence[PoolRequest]:
        return pool_requests(self.spark_settings, self.context, task)

    def check(self) -> CheckResult:
        java = check_java(self.spark_settings.java_home)
        if not java.ok:
            return CheckResult(False, java.message)
        try:
            import pyspark
        except ImportError as exc:
            return CheckResult(False, f"pyspark does not import: {exc}; pip install pyspark")
        return CheckResult(
            True, f"pyspark {pyspark.__version__} in {self.master} mode; {java.message}"
        )
