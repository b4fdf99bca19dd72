"""Helpers to install throwaway plugin distributions for a test: a real `*.dist-info` folder
with entry points on sys.path, found by importlib.metadata exactly as pip-installed ones are."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

Installer = Callable[..., Path]


@pytest.fixture
def install_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Installer]:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    added: list[str] = []

    def install(
        name: str,
        *,
        version: str = "1.0",
        requires_core: str = ">=0.1,<0.2",
        entry_points: dict[str, dict[str, str]] | None = None,
        modules: dict[str, str] | None = None,
    ) -> Path:
        mods = modules or {}
        for mod, source in mods.items():
            is_package = any(other.startswith(mod + ".") for other in mods)
            path = site / (mod.replace(".", "/") + ("/__init__.py" if is_package else ".py"))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
            added.append(mod.split(".")[0])
        dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
        dist.mkdir()
        requires = f"Requires-Dist: taskfabric{requires_core}\n" if requires_core else ""
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}"
        )
        lines = []
        for group, eps in (entry_points or {}).items():
            lines.append(f"[{group}]")
            lines += [f"{k} = {v}" for k, v in eps.items()]
        (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
        importlib.invalidate_caches()
        return dist

    yield install
    for mod in added:
        for key in [k for k in sys.modules if k == mod or k.startswith(mod + ".")]:
            del sys.modules[key]
    importlib.invalidate_caches()
