"""Container images per registration: `register --image` for the tasks that name none,
`@task(container_image=...)` per task, part of the immutable template, handed to backends."""

from __future__ import annotations

import json
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
from click.testing import CliRunner

from taskfabric import task
from taskfabric.cli import cli
from taskfabric.config import Config, StorageConfig
from taskfabric.core.v1 import types_pb2
from taskfabric.engine import Engine
from taskfabric.errors import TaskDefinitionError
from taskfabric.plugin_api import (
    BACKENDS_GROUP,
    AttemptPhase,
    AttemptStatus,
    Backend,
    BackendSettings,
    TaskAttempt,
)
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.registry import PackageError, RegistrationConflict, Registry, build_package
from taskfabric.types import default_engine

P, D = "acme", "production"

FLOWS = """
from taskfabric import task, workflow


@task
def extract(n: int) -> int:
    return n + 1


@task(container_image="ghcr.io/acme/gpu-train:2026.11")
def train(n: int) -> int:
    return n * 10


@workflow
def pipeline(n: int) -> int:
    return train(n=extract(n=n))
"""


def _tree(root: Path, module: str = "imgflows") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / f"{module}.py").write_text(textwrap.dedent(FLOWS))
    return root


def _images(registry: Registry, version: str) -> dict[str, str]:
    compiled, _ = registry.get_workflow(P, D, "imgflows.pipeline", version)
    return {t.id.name: t.container_image for t in compiled.tasks}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    with Engine(Config(storage=StorageConfig(data_root=tmp_path / "data"))) as engine:
        yield Registry(engine.metadata, engine.store)


def test_the_registration_image_fills_in_tasks_that_name_none(
    registry: Registry, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "src")
    registry.register(src, project=P, domain=D, version="v1", image="ghcr.io/acme/etl:3f9c0a1")
    assert _images(registry, "v1") == {
        "imgflows.extract": "ghcr.io/acme/etl:3f9c0a1",
        "imgflows.train": "ghcr.io/acme/gpu-train:2026.11",  # its own image wins
    }
    # without --image a task keeps its own and the others leave it to the backend
    registry.register(src, project=P, domain=D, version="v2")
    assert _images(registry, "v2") == {
        "imgflows.extract": "",
        "imgflows.train": "ghcr.io/acme/gpu-train:2026.11",
    }
    # several images side by side: one server runs code of many images
    assert (
        _images(registry, "v1")["imgflows.extract"] != _images(registry, "v2")["imgflows.extract"]
    )


def test_the_image_is_part_of_the_immutable_version(registry: Registry, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    registry.register(src, project=P, domain=D, version="v1", image="ghcr.io/acme/etl:aaa")
    again = registry.register(src, project=P, domain=D, version="v1", image="ghcr.io/acme/etl:aaa")
    assert again.unchanged
    with pytest.raises(RegistrationConflict) as caught:
        registry.register(src, project=P, domain=D, version="v1", image="ghcr.io/acme/etl:bbb")
    diff = str(caught.value)
    assert '-container_image: "ghcr.io/acme/etl:aaa"' in diff
    assert '+container_image: "ghcr.io/acme/etl:bbb"' in diff


def test_bad_image_references_are_refused_where_they_are_written(tmp_path: Path) -> None:
    with pytest.raises(PackageError, match="--image: container image 'Acme ETL'"):
        build_package(_tree(tmp_path / "src"), project=P, domain=D, version="v1", image="Acme ETL")
    with pytest.raises(TaskDefinitionError, match=r"task '.*bad'.*e\.g\. 'ghcr\.io/acme/etl"):

        @task(container_image="ghcr.io/acme/etl:")
        def bad() -> None: ...

    for good in (
        "python:3.11-slim",
        "localhost:5000/team/etl:v1",
        "ghcr.io/acme/etl@sha256:" + "a" * 64,
        "registry.example.com/a/b/c:1.2.3-rc1",
    ):

        @task(container_image=good)
        def fine() -> None: ...

        assert fine.template().container_image == good


SEEN: list[str] = []


class ImageRecordingBackend(Backend[BackendSettings]):
    """A backend that records the image each attempt asks for (what a container backend would
    pull) and answers n * 2."""

    driver: ClassVar[str] = "image-recorder"

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self._done: dict[str, AttemptStatus] = {}
        self._lock = threading.Lock()

    def submit(self, attempt: TaskAttempt) -> None:
        SEEN.append(f"{attempt.task.id.name}={attempt.task.container_image}")
        n = attempt.inputs.literals["n"].integer
        value = default_engine().to_literal(n * 2, int)
        with self._lock:
            self._done[attempt.attempt_id] = AttemptStatus(
                AttemptPhase.SUCCEEDED,
                outputs=types_pb2.LiteralMap(literals={"o0": value}),
            )
        attempt.notify(attempt.attempt_id)

    def poll(self, attempt_id: str) -> AttemptStatus:
        with self._lock:
            return self._done[attempt_id]

    def cancel(self, attempt_id: str) -> None:
        pass


def test_backends_get_the_registered_image_of_each_task(tmp_path: Path) -> None:
    plugins = Plugins(autoload=False)
    plugins.add_driver(BACKENDS_GROUP, "image-recorder", ImageRecordingBackend)
    config = Config(
        storage=StorageConfig(data_root=tmp_path / "data"),
        task_types={"python": "image-recorder"},
    )
    SEEN.clear()
    with use_plugins(plugins), Engine(config, plugins=plugins) as engine:
        registry = Registry(engine.metadata, engine.store)
        src = _tree(tmp_path / "src", "imgflows")
        registry.register(src, project=P, domain=D, version="v1", image="ghcr.io/acme/etl:v1")
        request = registry.prepare_workflow_launch(
            P,
            D,
            "imgflows.pipeline",
            version="v1",
            inputs={"n": default_engine().to_literal(3, int)},
        )
        rec = engine.enqueue(
            request.workflow, request.inputs, project=P, domain=D, name="imgrun", code=request.code
        )
        result = engine.resume(rec.id)
    assert result.phase == "SUCCEEDED", result.error
    assert SEEN == [
        "imgflows.extract=ghcr.io/acme/etl:v1",
        "imgflows.train=ghcr.io/acme/gpu-train:2026.11",
    ]


def test_register_image_on_the_command_line(tmp_path: Path) -> None:
    config = tmp_path / "taskfabric.toml"
    config.write_text(f'[project]\nname = "{P}"\ndomain = "{D}"\n')
    src = _tree(tmp_path / "src", "imgflows")
    result = CliRunner().invoke(
        cli,
        ["--config", str(config), "register", str(src), "--version", "v1"]
        + ["--image", "ghcr.io/acme/etl:cli", "-o", "json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["image"] == "ghcr.io/acme/etl:cli"
    bad = CliRunner().invoke(
        cli, ["--config", str(config), "register", str(src), "--version", "v2", "--image", "x y"]
    )
    assert bad.exit_code != 0 and "--image: container image 'x y'" in bad.stderr


def test_the_api_shows_each_task_image(tmp_path: Path) -> None:
    from taskfabric.server import ANONYMOUS_ADMIN, ControlPlane

    plane = ControlPlane(Config(storage=StorageConfig(data_root=tmp_path / "data")))
    try:
        plane.registry.register(
            _tree(tmp_path / "src"), project=P, domain=D, version="v1", image="ghcr.io/acme/etl:1"
        )
        detail = plane.workflow(ANONYMOUS_ADMIN, P, D, "imgflows.pipeline", None)
    finally:
        plane.close()
    assert detail.images == {
        "imgflows.extract": "ghcr.io/acme/etl:1",
        "imgflows.train": "ghcr.io/acme/gpu-train:2026.11",
    }
