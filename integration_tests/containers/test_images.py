"""Images from a spec, built through real podman: tagged by content, reused unchanged, rebuilt
when a file of the spec's code changes; `plugins check` sees the runtime and the image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

from taskfabric_containers import ImageBuildError, ImageSpec, build_image
from taskfabric_containers._client import ContainerApi


def taskfabric(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "taskfabric.cli", *args],
        capture_output=True, text=True, timeout=900, check=False,
        env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip


def run_in(api: ContainerApi, image: str, *command: str) -> str:
    out = api.client.containers.run(image, list(command), remove=True, network_mode="none")
    return bytes(out).decode()


def test_an_image_is_built_once_per_spec_content(
    tmp_path: Path, api: ContainerApi, podman_url: str
) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "greet.py").write_text("WORD = 'hello'\n")
    # A spec of this run's own: the image cannot exist before.
    env = {"GREETING": "hi", "RUN": uuid.uuid4().hex}
    (tmp_path / "specs.py").write_text(
        "from taskfabric_containers import ImageSpec\n"
        f"spec = ImageSpec(name='taskfabric-it-spec', code=['helpers'], env={env!r},"
        f" root={str(tmp_path)!r})\n"
    )
    spec = ImageSpec(name="taskfabric-it-spec", code=["helpers"], env=env, root=str(tmp_path))
    first = build_image(spec, api)
    assert first.built
    assert first.ref == spec.image_ref()
    assert first.ref.startswith("localhost/taskfabric-it-spec:")
    out = run_in(
        api,
        first.ref,
        "python3",
        "-c",
        "import os, greet; print(greet.WORD, os.environ['GREETING'])",
    )
    assert out == "hello hi\n"
    # The same spec again, from the command line, through the config's podman backend:
    # nothing is built.
    config = tmp_path / "taskfabric.toml"
    config.write_text(f'[backends.podman]\ndriver = "podman"\nurl = "{podman_url}"\n')
    again = taskfabric(
        "--config", str(config), "images", "build", "--backend", "podman", "-o", "json",
        f"{tmp_path}/specs.py:spec",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["image"] == first.ref
    assert json.loads(again.stdout)["built"] is False
    assert "up to date (spec unchanged)" in again.stderr
    # A changed file of the code gives a new tag, and a new build.
    (tmp_path / "helpers" / "greet.py").write_text("WORD = 'bonjour'\n")
    second = build_image(spec, api)
    assert second.built and second.ref != first.ref
    assert (
        run_in(api, second.ref, "python3", "-c", "import greet; print(greet.WORD)") == "bonjour\n"
    )


def test_a_bad_spec_says_what_to_write(tmp_path: Path) -> None:
    (tmp_path / "specs.py").write_text(
        "from taskfabric_containers import ImageSpec\nspec = ImageSpec(python_version='3.12')\n"
    )
    result = taskfabric("images", "build", f"{tmp_path}/specs.py:spec")
    assert result.returncode == 1
    assert "python_version '3.12': Debian bookworm's python3 is 3.11" in result.stderr


def test_plugins_check_sees_the_runtime_and_the_default_image(
    tmp_path: Path, podman_url: str, task_image: str
) -> None:
    config = tmp_path / "taskfabric.toml"
    table = (
        '[task_types]\npython = "podman"\n[backends.podman]\ndriver = "podman"\n'
        f'url = "{podman_url}"\n'
    )
    config.write_text(table + f'image = "{task_image}"\n')
    result = taskfabric("--config", str(config), "plugins", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"default image {task_image} is there" in " ".join(result.stdout.split())
    assert "podman 4." in result.stdout
    # The docker driver is the same backend: it speaks the same API (here, podman's).
    config.write_text(table.replace('driver = "podman"', 'driver = "docker"') + "\n")
    result = taskfabric("--config", str(config), "plugins", "check")
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stdout.split())
    assert "backend podman (driver docker)" in out and "podman 4." in out
    config.write_text(table + 'image = "localhost/not-built:1"\n')
    result = taskfabric("--config", str(config), "plugins", "check")
    assert result.returncode == 1
    assert "the default image 'localhost/not-built:1' is not there" in " ".join(
        result.stdout.split()
    )
    config.write_text(table.replace(podman_url, "unix:///nonexistent/podman.sock"))
    result = taskfabric("--config", str(config), "plugins", "check")
    assert result.returncode == 1
    assert "no container API answers at unix:///nonexistent/podman.sock" in " ".join(
        result.stdout.split()
    )


def test_an_image_with_a_registry_is_pushed_there(
    api: ContainerApi, task_image: str, registry: str
) -> None:
    """The tests' task image, its spec naming a real registry (Debian's docker-registry on
    127.0.0.1): the build finds it up to date and pushes it; the registry serves it."""
    import dataclasses

    import httpx
    from conftest import TASK_IMAGE

    spec = dataclasses.replace(TASK_IMAGE, registry=registry)
    first = build_image(spec, api)
    assert not first.built and first.ref == task_image
    tag = first.ref.rpartition(":")[2]
    name = TASK_IMAGE.name
    tags = httpx.get(f"http://{registry}/v2/{name}/tags/list", timeout=30).json()
    assert tag in tags["tags"], tags
    manifest = httpx.get(
        f"http://{registry}/v2/{name}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, "
                 "application/vnd.docker.distribution.manifest.v2+json"},
        timeout=30,
    )  # fmt: skip
    assert manifest.status_code == 200, manifest.text
    assert manifest.json()["layers"], manifest.json()
    # A registry nobody listens on: a clear build error that names it, not a library's error.
    nowhere = dataclasses.replace(TASK_IMAGE, registry="127.0.0.1:9")
    try:
        build_image(nowhere, api)
    except ImageBuildError as exc:
        message = str(exc)
    else:
        raise AssertionError("a push to a registry nobody listens on succeeded")
    assert f"the push to 127.0.0.1:9/{name}:{tag} failed" in message, message
