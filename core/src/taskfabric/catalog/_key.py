"""Cache keys: one function, used by every way a task can run.

key = sha256(project, domain, task name, cache version, interface hash, inputs hash)

- The cache version is the task's explicit `Cache(version=...)`, or else derived from its
  code: the task function's compiled code plus that of every function and class of the same
  module that it calls, directly or through each other (found from the names the code uses,
  not by running it). Editing what any of them does gives a new version; comments and
  formatting do not.
  Not covered: code in other modules and installed packages, data the code reads from files
  or the network, environment variables, and the Python version. Give an explicit version
  (and bump it) when results depend on those.
- The interface hash covers the names and types of inputs and outputs.
- The inputs hash is over the canonical encoding of the input values: map and record field
  order do not matter; files and directories count by content, not by path; inputs listed in
  `Cache(ignored_inputs=...)` are left out.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Callable, Collection
from typing import Any

from taskfabric.core.v1 import interface_pb2, types_pb2
from taskfabric.types import literal_map_hash

_AUTO_PREFIX = "auto-"


def _digest_code(code: types.CodeType, digest: Any, names: set[str]) -> None:
    """Feed what a code object does (not where it sits in its file) into `digest`."""
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    names.update(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _digest_code(const, digest, names)
        else:
            digest.update(repr(const).encode())
        digest.update(b"\0")


def _digest_object(obj: Any, digest: Any, names: set[str]) -> None:
    code = getattr(obj, "__code__", None)
    if isinstance(code, types.CodeType):
        _digest_code(code, digest, names)
        return
    if inspect.isclass(obj):
        for attr, value in sorted(vars(obj).items()):
            digest.update(attr.encode())
            inner = getattr(value, "__func__", value)  # staticmethod / classmethod
            if isinstance(getattr(inner, "__code__", None), types.CodeType):
                _digest_code(inner.__code__, digest, names)
            elif isinstance(value, (int, float, str, bytes, bool, type(None))):
                digest.update(repr(value).encode())
        digest.update(repr(getattr(obj, "__annotations__", {})).encode())


def source_version(fn: Callable[..., Any]) -> str:
    """A version derived from the code of `fn` and the same-module code it calls.

    It hashes the compiled code that runs (bytecode, constants, names), not the text of the
    file: comments, blank lines and formatting do not change it, an edit of what the code
    does does, and so does a Python upgrade (its bytecode differs).
    """
    module = sys.modules.get(fn.__module__)
    namespace = vars(module) if module is not None else {}
    digest = hashlib.sha256()
    seen: set[int] = set()
    pending: list[tuple[str, Any]] = [(fn.__qualname__, fn)]
    while pending:
        name, obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        digest.update(name.encode() + b"\0")
        used: set[str] = set()
        _digest_object(obj, digest, used)
        for ref in sorted(used):
            target = namespace.get(ref)
            target = getattr(target, "function", target)  # a @task called by a task
            if target is None or id(target) in seen:
                continue
            if (inspect.isfunction(target) or inspect.isclass(target)) and getattr(
                target, "__module__", None
            ) == fn.__module__:
                pending.append((ref, target))
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
