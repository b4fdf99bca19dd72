"""Cache keys: one function, used by every way a task can run.

key = sha256(project, domain, task name, cache version, interface hash, inputs hash)

- The cache version is the task's explicit `Cache(version=...)`, or else derived from its
  source code: the task function's own source plus the source of every function and class of
  the same module that it calls, directly or through each other (found by reading the code's
  names, not by running it). Editing any of them gives a new version.
  Not covered: code in other modules and installed packages, data the code reads from files
  or the network, environment variables, and the Python version. Give an explicit version
  (and bump it) when results depend on those.
- The interface hash covers the names and types of inputs and outputs.
- The inputs hash is over the canonical encoding of the input values: map and record field
  order do not matter; files and directories count by content, not by path; inputs listed in
  `Cache(ignored_inputs=...)` are left out.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import sys
import textwrap
from collections.abc import Callable, Collection
from typing import Any

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.types import literal_map_hash

_AUTO_PREFIX = "auto-"


def _names_used(source: str) -> set[str]:
    try:
        tree = ast.parse(textwrap.dedent(source))
    except SyntaxError:
        return set()
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def _own_source(obj: Any) -> str:
    try:
        return inspect.getsource(obj)
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return code.co_code.hex() if code is not None else repr(obj)


def source_version(fn: Callable[..., Any]) -> str:
    """A version derived from `fn`'s source and the same-module code it calls."""
    module = sys.modules.get(fn.__module__)
    namespace = vars(module) if module is not None else {}
    seen: dict[str, str] = {}
    pending: list[tuple[str, Any]] = [(fn.__qualname__, fn)]
    while pending:
        name, obj = pending.pop()
        if name in seen:
            continue
        source = _own_source(obj)
        seen[name] = source
        for used in sorted(_names_used(source)):
            target = namespace.get(used)
            target = getattr(target, "function", target)  # a @task called by a task
            if used in seen or target is None or target is obj:
                continue
            if (inspect.isfunction(target) or inspect.isclass(target)) and getattr(
                target, "__module__", None
            ) == fn.__module__:
                pending.append((used, target))
    digest = hashlib.sha256()
    for name in sorted(seen):
        digest.update(name.encode() + b"\0" + seen[name].encode() + b"\0")
    return _AUTO_PREFIX + digest.hexdigest()[:16]


def interface_hash(interface: interface_pb2.TypedInterface) -> str:
    """Hash of input and output names and types (not defaults or descriptions)."""
    digest = hashlib.sha256()
    named = [("in", i.name, i.type) for i in interface.inputs] + [
        ("out", o.name, o.type) for o in interface.outputs
    ]
    for label, name, lt in sorted(named, key=lambda e: (e[0], e[1])):
        digest.update(f"{label}:{name}:".encode())
        digest.update(lt.SerializeToString(deterministic=True))
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()


def inputs_hash(inputs: types_pb2.LiteralMap, ignored: Collection[str] = ()) -> str:
    return literal_map_hash(inputs, exclude=ignored)


def cache_key(
    *,
    project: str,
    domain: str,
    task_name: str,
    cache_version: str,
    interface_hash: str,
    inputs_hash: str,
) -> str:
    parts = (project, domain, task_name, cache_version, interface_hash, inputs_hash)
    digest = hashlib.sha256("\0".join(parts).encode())
    return digest.hexdigest()
