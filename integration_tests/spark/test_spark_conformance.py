"""Both Spark backends pass the core's backend conformance suite, with the suite's tasks run
as Spark tasks (task type `spark`): in a local-mode context, and as applications submitted to
a real standalone master."""

from __future__ import annotations

import pytest
from spark_light_conf import LIGHT_CONF

from taskfabric.testing import BackendConformance
from taskfabric_spark.testing import StandaloneCluster


class TestSparkLocalConformance(BackendConformance):
    backend = {"driver": "spark-local", "cores": 2, "conf": LIGHT_CONF}
    task_type = "spark"
    # Attempts are threads of the engine's process: a cancel stops their Spark jobs, not
    # their Python code.
    can_stop_running_work = False


class TestSparkSubmitConformance(BackendConformance):
    backend = {"driver": "spark-submit", "master": "set by the fixture below"}
    task_type = "spark"
    # Each attempt is a spark-submit process group, which cancel() kills.
    can_stop_running_work = True
    # An application takes 10-20 s to start on a 2-core machine.
    deadline = 150.0
    slow_task_seconds = 20.0
    settle_seconds = 2.0

    @pytest.fixture(autouse=True)
    def _on_the_cluster(
        self, spark_cluster: StandaloneCluster, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            type(self),
            "backend",
            {
                "driver": "spark-submit",
                "master": spark_cluster.master_url,
                "master_webui": spark_cluster.webui_url,
                "conf": LIGHT_CONF,
                "kill_grace_seconds": 5.0,
            },
        )
