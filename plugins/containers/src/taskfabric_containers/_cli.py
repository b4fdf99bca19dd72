"""`taskfabric images build | ref SPEC`: images from an `ImageSpec` (the plugin's command,
entry point `images` of the `taskfabric.commands` group)."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import click

from taskfabric_containers._images import ImageBuildError, ImageSpec


def load_spec(ref: str) -> ImageSpec:
    """The ImageSpec at `FILE.py:NAME` or `MODULE:NAME`."""
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise ImageBuildError(f"{ref!r} is not a spec reference: write FILE.py:NAME or MODULE:NAME")
    if target.endswith(".py") or "/" in target:
        path = Path(target).resolve()
        if not path.is_file():
            raise ImageBuildError(f"no such file: {target}")
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        if spec is None or spec.loader is None:
            raise ImageBuildError(f"cannot load {path}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules.setdefault(path.stem, module)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(target)
    value = getattr(module, attr, None)
    if not isinstance(value, ImageSpec):
        found = [k for k, v in vars(module).items() if isinstance(v, ImageSpec)]
        hint = f"; image specs there: {', '.join(sorted(found))}" if found else ""
        raise ImageBuildError(f"{ref}: {attr!r} is {type(value).__name__}, not an ImageSpec{hint}")
    return value


def api_url(backend: str | None, url: str | None) -> str:
    """--url, else the `url` of [backends.BACKEND] (or of the first podman/docker backend),
    else the podman default."""
    from taskfabric.config import load_config
    from taskfabric_containers._client import default_url

    if url:
        return url
    root = click.get_current_context().find_root()
    config = load_config(root.params.get("config_path"))
    tables = config.backends
    if backend is not None:
        table = tables.get(backend)
        if table is None or table.driver not in ("podman", "docker"):
            raise ImageBuildError(
                f"no [backends.{backend}] with driver podman or docker in the config file"
            )
        chosen = [(backend, table)]
    else:
        chosen = [(n, t) for n, t in tables.items() if t.driver in ("podman", "docker")][:1]
    for _, table in chosen:
        return str(table.options.get("url") or default_url(table.driver))
    return default_url("podman")


@click.group()
def images() -> None:
    """Container images built from an ImageSpec (taskfabric-containers)."""


@images.command()
@click.argument("spec")
@click.option("--backend", default=None, help="Build through this podman/docker backend's API.")
@click.option("--url", default=None, help="The container API (default: the backend's).")
@click.option("--no-cache", is_flag=True, help="Build again even if the image exists.")
@click.option("-o", "--output", type=click.Choice(["text", "json"]), default="text")
def build(spec: str, backend: str | None, url: str | None, no_cache: bool, output: str) -> None:
    """Build SPEC (FILE.py:NAME or MODULE:NAME), unless its image exists already.

    The image is tagged localhost/NAME:HASH, HASH being a content hash of the spec and of
    the local folders it names: it is rebuilt only when one of them changes.
    """
    from taskfabric_containers._client import ApiError, ContainerApi
    from taskfabric_containers._images import build_image

    def progress(line: str) -> None:
        click.echo(line, err=output == "json")

    try:
        image_spec = load_spec(spec)
        api = ContainerApi(api_url(backend, url), timeout=600)
        result = build_image(image_spec, api, progress, no_cache=no_cache)
    except (ImageBuildError, ApiError) as exc:
        raise click.ClickException(str(exc)) from exc
    data: dict[str, Any] = {"image": result.ref, "built": result.built, "seconds": result.seconds}
    if output == "json":
        click.echo(json.dumps(data))
    else:
        click.echo(result.ref)


@images.command()
@click.argument("spec")
def ref(spec: str) -> None:
    """Print the image reference of SPEC (what tasks name), without building it."""
    try:
        click.echo(load_spec(spec).image_ref())
    except ImageBuildError as exc:
        raise click.ClickException(str(exc)) from exc


__all__ = ["api_url", "images", "load_spec"]
