"""Loading a registered object from its code bundle: `load_bundled`."""

from __future__ import annotations

import importlib
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from taskfabric.bundles._bundle import BundleError, extract_bundle
from taskfabric.storage import BlobStore

_lock = threading.Lock()
# Top-level module name -> the bundle folder it was imported from, in this process.
_loaded_from: dict[str, Path] = {}


def _origin(module: Any) -> Path | None:
    file = getattr(module, "__file__", None)
    if file:
        return Path(file).resolve()
    paths = list(getattr(module, "__path__", []) or [])
    return Path(paths[0]).resolve() if paths else None


def bundle_root(code: Mapping[str, str], store: BlobStore, cache_root: Path) -> Path:
    """The folder to import a code location's modules from: its bundle extracted (once per
    digest) under `cache_root`, and the location's `root` inside it. Runs none of its code."""
    missing = [k for k in ("bundle", "module", "object") if not code.get(k)]
    if missing:
        raise BundleError(f"code location {dict(code)!r} lacks {', '.join(missing)}")
    folder = extract_bundle(store, code["bundle"], cache_root).resolve()
    root = (folder / code.get("root", "")).resolve()
    if not root.is_relative_to(folder) or not root.is_dir():
        raise BundleError(f"code root '{code.get('root')}' is not a folder of {code['bundle']}")
    return root


def load_bundled(code: Mapping[str, str], store: BlobStore, cache_root: Path) -> Any:
    """The object a code location names, imported from its bundle.

    `code` is `{"bundle": uri, "root": path in the bundle, "module": "pkg.mod", "object":
    "qualname"}`. The bundle is extracted once per digest under `cache_root`, the root put
    first on `sys.path` (and on `PYTHONPATH`, for the processes this one starts) and the
    module imported. A process holds one bundle per top-level
    module: loading the same module from a different bundle raises `BundleError` (each
    execution runs in its own worker process, where this never happens).
    """
    root = bundle_root(code, store, cache_root)
    module_name = code["module"]
    top = module_name.split(".")[0]
    with _lock:
        known = _loaded_from.get(top)
        if known is not None and known != root:
            raise BundleError(
                f"module '{top}' is already loaded in this process from another code bundle "
                f"({known.name}); cannot also load it from {code['bundle']}: run each version "
                "in its own worker process"
            )
        if known is None and top in sys.modules:
            origin = _origin(sys.modules[top])
            if origin is None or not origin.is_relative_to(root):
                raise BundleError(
                    f"module '{top}' is already imported in this process from "
                    f"{origin or 'an unknown place'}; cannot load it from {code['bundle']}"
                )
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        # Attempts run out of process (`taskfabric-execute`) import the same code.
        python_path = os.environ.get("PYTHONPATH", "")
        if str(root) not in python_path.split(os.pathsep):
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), python_path) if p)
        _loaded_from[top] = root
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:
            raise BundleError(
                f"cannot import '{module_name}' from code bundle {code['bundle']}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    obj: Any = module
    try:
        for part in code["object"].split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise BundleError(
            f"'{module_name}' in code bundle {code['bundle']} has no '{code['object']}'"
        ) from None
    return obj
