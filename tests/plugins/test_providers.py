"""The install hints name only distributions that exist: `KNOWN_PROVIDERS` is what the plugins
in this repository provide, derived here from their files (every `plugins/*`, so a plugin added
later is covered)."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from taskfabric.plugin_api import BACKENDS_GROUP, STORAGE_GROUP
from taskfabric.plugins import KNOWN_PROVIDERS

ROOT = Path(__file__).resolve().parents[2]


def _task_type_names(src: Path) -> set[str]:
    """`name = "..."` of every class deriving from a `...TaskType` class under `src`."""
    names = set()
    for path in src.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [
                b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases
            ]
            if not any(b.endswith("TaskType") for b in bases):
                continue
            for stmt in node.body:
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target = stmt.targets[0]
                value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
                if (
                    isinstance(target, ast.Name)
                    and target.id == "name"
                    and isinstance(value, ast.Constant)
                    and isinstance(value.value, str)
                ):
                    names.add(value.value)
    return names


def provided_in_the_tree() -> dict[str, str]:
    """Driver and task type name -> the distribution of this repository that provides it."""
    provided: dict[str, str] = {}
    for pyproject in sorted((ROOT / "plugins").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
        entry_points = project.get("entry-points", {})
        names = {n for g in (BACKENDS_GROUP, STORAGE_GROUP) for n in entry_points.get(g, {})}
        names |= _task_type_names(pyproject.parent / "src")
        for name in names:
            assert provided.get(name, project["name"]) == project["name"], (
                f"'{name}' is provided by both {provided[name]} and {project['name']}"
            )
            provided[name] = project["name"]
    return provided


def test_known_providers_are_what_the_plugins_in_the_tree_provide() -> None:
    provided = provided_in_the_tree()
    assert {"shell", "spark", "spark-submit", "http-job"} <= provided.keys()  # the reader works
    missing = {n: d for n, d in provided.items() if KNOWN_PROVIDERS.get(n) != d}
    stale = sorted(n for n in KNOWN_PROVIDERS if n not in provided)
    assert not missing and not stale, (
        "KNOWN_PROVIDERS (core/src/taskfabric/plugins/_registry.py) must list exactly what "
        f"plugins/* provide: add or correct {missing}; remove {stale} (no such distribution)"
    )
