"""A task's cache version derived from its code (`source_version`), for `Cache()` without an
explicit version: what it covers is described in `taskfabric.catalog`'s key module."""

from __future__ import annotations

import hashlib
import inspect
import sys
import types
from collections.abc import Callable
from typing import Any

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
