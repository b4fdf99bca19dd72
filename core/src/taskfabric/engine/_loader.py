"""Loading workflows from files and modules: `path/to/file.py:workflow` or `pkg.mod:wf`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from taskfabric.bundles import load_bundled
from taskfabric.errors import TaskfabricError


class LoadError(TaskfabricError):
    """A workflow reference could not be loaded."""


def _module_from_file(path: Path) -> ModuleType:
    path = path.resolve()
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None and getattr(existing, "__file__", None):
        if Path(existing.__file__ or "").resolve() == path:
            return existing
        raise LoadError(
            f"cannot load {path}: a different module named '{name}' is already imported "
            f"from {existing.__file__}; rename the file"
        )
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"cannot load {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        sys.modules.pop(name, None)
        raise
    return module


def load_object(ref: str) -> tuple[Any, dict[str, str]]:
    """Load `file.py:name` or `package.module:name`.

    Returns the object and a code location that `load_code` can load again later.
    """
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr:
        raise LoadError(
            f"'{ref}' is not a workflow reference: write FILE.py:WORKFLOW or MODULE:WORKFLOW"
        )
    if target.endswith(".py") or "/" in target or Path(target).is_file():
        path = Path(target)
        if not path.is_file():
            raise LoadError(f"no such file: {target}")
        module = _module_from_file(path)
        code = {"file": str(path.resolve()), "object": attr}
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as exc:
            raise LoadError(f"cannot import module '{target}': {exc}") from exc
        code = {"module": target, "object": attr}
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        from taskfabric.sdk import WorkflowDefinition

        found = [k for k, v in vars(module).items() if isinstance(v, WorkflowDefinition)]
        hint = f"; workflows there: {', '.join(sorted(found))}" if found else ""
        raise LoadError(f"'{target}' has no attribute '{attr}'{hint}") from None
    return obj, code


def load_code(code: dict[str, str], *, store: Any = None, cache_root: Any = None) -> Any:
    """Load an object again from a recorded code location: a file or module returned by
    `load_object`, or a registered code bundle (`{"bundle": uri, "module", "object"}`)."""
    if "bundle" in code:
        if store is None or cache_root is None:
            raise LoadError("loading a code bundle needs the blob store and a cache folder")
        return load_bundled(code, store, cache_root)
    if "file" in code:
        return load_object(f"{code['file']}:{code['object']}")[0]
    if "module" in code:
        return load_object(f"{code['module']}:{code['object']}")[0]
    raise LoadError(f"the execution records no code location ({code!r})")
