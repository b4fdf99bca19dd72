"""The engine's parts talk through their public methods (read from the source).

Each part of the execution loop (attempts, cache step, composite nodes, recording, ...) owns
its state: no module of the engine package reads or calls a `_private` attribute of another
object, imports another module's `_private` name, or has a forwarding one-liner (see
`_is_forwarder`); and no module grows near the house limit of ~700 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import taskfabric.engine

ENGINE = Path(taskfabric.engine.__file__).parent
MODULES = sorted(ENGINE.glob("*.py"))
MAX_LINES = 600


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _is_forwarder(fn: ast.FunctionDef) -> bool:
    """A method whose body is one call passing its own parameters on, in order, either
    with `self` to a function (`return _caching.cache_lookup(self, ns)`: a helper module
    working on the object's insides) or, for a private method, to another object
    (`self._x.start(ns)`: an alias that hides where the work is done). A public method that
    is one call is an interface kept by delegating, and allowed."""
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]  # the docstring
    if len(body) != 1 or not isinstance(body[0], ast.Return | ast.Expr):
        return False
    call = body[0].value
    if not isinstance(call, ast.Call):
        return False
    params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]][1:]
    passed = [a.id for a in call.args if isinstance(a, ast.Name)]
    passed += [k.value.id for k in call.keywords if isinstance(k.value, ast.Name)]
    if len(passed) != len(call.args) + len(call.keywords):
        return False  # something is computed on the way: not a plain forward
    func = call.func
    if passed == ["self", *params]:
        # a module's function (or a bare one) handed the object itself, not a service the
        # object owns called back with its client (`self.service.acquire(self, ...)`)
        return not (isinstance(func, ast.Attribute) and ast.unparse(func).startswith("self."))
    return _private(fn.name) and passed == params and isinstance(func, ast.Attribute)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_part_reaches_into_another_objects_private_members(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = node.value
            if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                found.append(f"{path.name}:{node.lineno}: {ast.unparse(node)}")
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taskfabric"):
            found += [
                f"{path.name}:{node.lineno}: imports {node.module}.{alias.name}"
                for alias in node.names
                if _private(alias.name)
            ]
    assert not found, "private members used across objects or modules:\n" + "\n".join(found)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_method_only_forwards_its_arguments(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    found = [
        f"{path.name}:{fn.lineno}: {cls.name}.{fn.name}"
        for cls in ast.walk(tree)
        if isinstance(cls, ast.ClassDef)
        for fn in cls.body
        if isinstance(fn, ast.FunctionDef) and _is_forwarder(fn)
    ]
    assert not found, "methods that only forward their arguments:\n" + "\n".join(found)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_modules_stay_small(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.name} has {lines} lines: cut it by responsibility"


def test_the_forwarder_check_flags_the_old_runners_methods() -> None:
    tree = ast.parse(
        "class Runner:\n"
        "    def _cache_lookup(self, ns):\n"
        "        return _caching.cache_lookup(self, ns)\n"
        "    def _start(self, ns):\n"
        "        '''Start it.'''\n"
        "        self._attempts.start(ns)\n"
        "    def ready(self, ns):\n"
        "        self._ready.append(ns)\n"
        "    def _fail(self, ns, err):\n"
        "        self.fail(ns, wrap(err))\n"
    )
    flagged = [
        fn.name for fn in ast.walk(tree) if isinstance(fn, ast.FunctionDef) and _is_forwarder(fn)
    ]
    assert flagged == ["_cache_lookup", "_start"]
