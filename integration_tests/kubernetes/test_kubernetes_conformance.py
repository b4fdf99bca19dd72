"""The `kubernetes` backend passes the backend conformance suite, in real pods."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from conftest import NAMESPACE, Cluster

from taskfabric.config import Config
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins
from taskfabric.testing import BackendConformance
from taskfabric_kubernetes import KubernetesBackend


class TestKubernetesConformance(BackendConformance):
    backend: ClassVar[dict[str, Any]] = {"driver": "kubernetes"}
    can_stop_running_work = True
    deadline = 180.0
    # A cancelled pod is stopped once kubelet sees its deletion: on a loaded machine that can
    # take seconds, so the suite's slow task sleeps long enough to tell stopped from ended.
    slow_task_seconds = 12.0
    settle_seconds = 3.0

    def setup_plugins(self, plugins: Plugins) -> None:
        plugins.add_driver(BACKENDS_GROUP, "kubernetes", KubernetesBackend)

    @pytest.fixture
    def conformance_config(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        conformance_scratch: Path,
        cluster: Cluster,
    ) -> Config:
        # The suite's tasks leave markers in a scratch folder: every pod gets it mounted.
        scratch = str(conformance_scratch)
        type(self).backend = {
            "driver": "kubernetes",
            "kubeconfig": str(cluster.kubeconfig),
            "context": "taskfabric-test",
            "namespace": NAMESPACE,
            "image": cluster.image,
            "image_pull_policy": "Never",
            "code": "host-path",
            "kill_grace_seconds": 2,
            "pod_template": {
                "spec": {
                    "hostNetwork": True,
                    "volumes": [{"name": "scratch", "hostPath": {"path": scratch}}],
                    "containers": [
                        {
                            "name": "task",
                            "volumeMounts": [{"name": "scratch", "mountPath": scratch}],
                        }
                    ],
                }
            },
        }
        fixture = BackendConformance.conformance_config.__wrapped__  # type: ignore[attr-defined]
        config: Config = fixture(self, tmp_path, monkeypatch)
        return config
