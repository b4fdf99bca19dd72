"""The `podman` backend passes the backend conformance suite, in real containers."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest

from taskfabric.config import Config
from taskfabric.plugin_api import BACKENDS_GROUP
from taskfabric.plugins import Plugins
from taskfabric.testing import BackendConformance
from taskfabric_containers import DockerBackend, PodmanBackend


class TestPodmanConformance(BackendConformance):
    backend: ClassVar[dict[str, Any]] = {"driver": "podman"}
    can_stop_running_work = True
    deadline = 120.0
    slow_task_seconds = 3.0
    settle_seconds = 2.0
    kill_grace_seconds = 2

    def setup_plugins(self, plugins: Plugins) -> None:
        plugins.add_driver(BACKENDS_GROUP, "podman", PodmanBackend)
        plugins.add_driver(BACKENDS_GROUP, "docker", DockerBackend)

    @pytest.fixture
    def conformance_config(
        self,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        conformance_scratch: Path,
        podman_url: str,
        task_image: str,
    ) -> Config:
        # The suite's tasks leave markers in a scratch folder: the container gets it mounted.
        type(self).backend = {
            "driver": "podman",
            "url": podman_url,
            "image": task_image,
            "mounts": [f"{conformance_scratch}:{conformance_scratch}:rw"],
            "kill_grace_seconds": 2,
        }
        fixture = BackendConformance.conformance_config.__wrapped__  # type: ignore[attr-defined]
        config: Config = fixture(self, tmp_path, monkeypatch)
        return config
