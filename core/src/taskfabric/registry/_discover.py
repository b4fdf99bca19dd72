"""Finding the tasks, workflows and launch plans of a folder, package or file.

The modules are imported with the code root first on `sys.path` and under their import path
relative to that root (so `pkg/flows.py` is `pkg.flows`, the name a worker imports from the
bundle). Imports are isolated: modules of the same names imported before are set aside and put
back afterwards, so registering two trees (or two versions of one) in one process is safe.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from taskfabric.bundles import SKIPPED_DIRS
from taskfabric.errors import TaskfabricError

#: Files never imported when registering a folder: they run tools, not workflows.
SKIPPED_FILES = frozenset({"setup.py", "conftest.py", "noxfile.py", "fabfile.py"})

_import_lock = threading.RLock()


class DiscoveryError(TaskfabricError):
    """A path cannot be registered: not found, not Python, or a module fails to import."""


@dataclass(frozen=True)
class SourceTree:
    """What to bundle and import: `root` goes on `sys.path`; `include` (relative to `root`)
    is bundled; `modules` are imported."""

    root: Path
    include: tuple[str, ...]
    modules: tuple[str, ...]
    skipped: tuple[str, ...] = ()


@dataclass
class Found:
    """The objects found in the imported modules, in discovery order."""

    tasks: list[Any] = field(default_factory=list)
    workflows: list[Any] = field(default_factory=list)
    launch_plans: list[Any] = field(default_factory=list)


def _top_package(folder: Path) -> Path:
    """The outermost package containing `folder` (a folder with __init__.py)."""
    top = folder
    while (top.parent / "__init__.py").is_file() and top.parent != top:
        top = top.parent
    return top


def _module_name(root: Path, file: Path) -> str:
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        rel = path.relative_to(folder).parts
        if any(p.startswith(".") or p in SKIPPED_DIRS for p in rel[:-1]):
            continue
        if any(
            (folder.joinpath(*rel[: i + 1]) / "pyvenv.cfg").exists() for i in range(len(rel) - 1)
        ):
            continue
        yield path


def source_tree(path: Path) -> SourceTree:
    """Where the code of `path` (a folder of .py files, a package, or one .py file) lives."""
    path = Path(path).resolve()
    if not path.exists():
        raise DiscoveryError(f"no such file or folder: {path}")
    if path.is_file():
        if path.suffix != ".py":
            raise DiscoveryError(f"{path} is not a Python file")
        if (path.parent / "__init__.py").is_file():
            top = _top_package(path.parent)
            return SourceTree(top.parent, (top.name,), (_module_name(top.parent, path),))
        return SourceTree(path.parent, (path.name,), (path.stem,))
    if (path / "__init__.py").is_file():
        top = _top_package(path)
        root = top.parent
        include: tuple[str, ...] = (top.name,)
    else:
        root = path
        include = ("",)
    modules: list[str] = []
    skipped: list[str] = []
    for file in _python_files(path):
        name = _module_name(root, file)
        rel = file.relative_to(root).as_posix()
        if file.name in SKIPPED_FILES:
            skipped.append(rel)
        elif not name or not all(part.isidentifier() for part in name.split(".")):
            skipped.append(rel)  # not importable by name, e.g. my-script.py
        else:
            modules.append(name)
    if not modules:
        raise DiscoveryError(f"no Python modules to import under {path}")
    return SourceTree(root, include, tuple(modules), tuple(skipped))


@contextmanager
def isolated_imports(tree: SourceTree) -> Iterator[None]:
    """Import `tree`'s modules fresh from its root, then restore `sys.modules` and `sys.path`.

    One at a time per process: `sys.modules` and `sys.path` are process-wide.
    """
    tops = {m.split(".")[0] for m in tree.modules}

    def ours(name: str) -> bool:
        return name.split(".", maxsplit=1)[0] in tops

    with _import_lock:
        saved_path = list(sys.path)
        saved_bytecode = sys.dont_write_bytecode
        saved = {k: v for k, v in sys.modules.items() if ours(k)}
        for name in saved:
            del sys.modules[name]
        sys.path.insert(0, str(tree.root))
        sys.dont_write_bytecode = True  # never write __pycache__ into the user's tree
        importlib.invalidate_caches()
        try:
            yield
        finally:
            for name in [k for k in sys.modules if ours(k)]:
                del sys.modules[name]
            sys.modules.update(saved)
            sys.path[:] = saved_path
            sys.dont_write_bytecode = saved_bytecode
            importlib.invalidate_caches()


def import_modules(tree: SourceTree) -> list[ModuleType]:
    """Import every module of `tree` (call inside `isolated_imports`)."""
    modules = []
    for name in tree.modules:
        try:
            modules.append(importlib.import_module(name))
        except TaskfabricError as exc:  # already says where and what (a bad declaration)
            raise DiscoveryError(f"cannot import module '{name}': {exc}") from exc
        except Exception as exc:
            tb = traceback.extract_tb(exc.__traceback__)
            where = next(
                (
                    f"{f.filename}:{f.lineno}"
                    for f in reversed(tb)
                    if f.filename.startswith(str(tree.root))
                ),
                str(tree.root),
            )
            raise DiscoveryError(
                f"cannot import module '{name}' (from {tree.root}): {where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return modules


def find_objects(modules: list[ModuleType]) -> Found:
    """Tasks, workflows and launch plans defined in `modules` (not those merely imported)."""
    from taskfabric.sdk import LaunchPlan, TaskDefinition, WorkflowDefinition

    found = Found()
    seen: set[int] = set()
    names = {m.__name__ for m in modules}
    for module in modules:
        for value in vars(module).values():
            if id(value) in seen:
                continue
            if isinstance(value, TaskDefinition | WorkflowDefinition):
                if value.function.__module__ not in names:
                    continue
                seen.add(id(value))
                bucket = found.tasks if isinstance(value, TaskDefinition) else found.workflows
                bucket.append(value)
            elif isinstance(value, LaunchPlan) and value.module in names:
                seen.add(id(value))
                found.launch_plans.append(value)
    return found
