"""Both Flink backends pass the core's backend conformance suite, with the suite's tasks run
as Flink tasks (task type `flink`) in the backends' client processes. The suite's tasks use
no Flink API, so no gateway JVM starts for them: the suite checks the attempt mechanics
(outputs, errors, retries, timeouts, cancel, re-attach) that both backends share with the
Flink jobs the other tests run."""

from __future__ import annotations

import pytest

from taskfabric.testing import BackendConformance
from taskfabric_flink.cluster import SessionCluster


class TestFlinkLocalConformance(BackendConformance):
    backend = {"driver": "flink-local", "kill_grace_seconds": 2.0}
    task_type = "flink"
    # Each attempt is a client process group, which cancel() kills.
    can_stop_running_work = True
    deadline = 90.0


class TestFlinkClusterConformance(BackendConformance):
    backend = {"driver": "flink-cluster", "rest_url": "set by the fixture below"}
    task_type = "flink"
    can_stop_running_work = True
    deadline = 90.0

    @pytest.fixture(autouse=True)
    def _on_the_cluster(
        self, flink_cluster: SessionCluster, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(
            type(self),
            "backend",
            {
                "driver": "flink-cluster",
                "rest_url": flink_cluster.rest_url,
                "kill_grace_seconds": 2.0,
            },
        )
