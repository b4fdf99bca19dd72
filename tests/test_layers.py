"""The layers of the core and the import rules for plugins, checked over every module's imports.

Every `.py` file of the core (`core/src/taskfabric`) and of every plugin in the tree (each
`plugins/*/src/*`, found afresh on every run, so a plugin added later is covered) is parsed, and
every import is read: at module level, inside functions (deferred imports), under
`if TYPE_CHECKING:`, `importlib.import_module("...")` / `__import__("...")` with a literal name,
the `"module:attribute"` strings that the core loads drivers from, and a submodule reached as
an attribute of an imported package (`import taskfabric` then `taskfabric.engine.Engine`: it
works whenever something else imported it first, so it is a dependency all the same). The
rules, with the layers listed in `LAYERS` (and in docs/architecture.md, which a test keeps
equal):

1. Every package and top-level module of the core belongs to one layer.
2. A core module imports only its own package and packages of lower layers, by any import
   above. So types, SDK and engine never import the command line, the server or the registry.
3. The core imports no plugin.
4. A plugin imports only public modules and names of the core (no `_private` part) and never
   the engine, the metadata store or the pool manager (`taskfabric.engine`,
   `taskfabric.metadata`, `taskfabric.pools`).
5. No import circles between packages, counting every import above (also the ones under
   `TYPE_CHECKING`: a type a package names is something it depends on).
6. No import circles between modules among the imports that run (module level, deferred,
   loaded by name). Inside one package, a circle closed only by `TYPE_CHECKING` imports is
   allowed: it never runs, and mutually recursive types need it (the type engine calls its
   transformers with itself).
7. A plugin imports another plugin only when its `pyproject.toml` declares that plugin's
   distribution (a dependency, or an extra), only its public modules and names, and one
   declared in an extra only where the import need not run (inside a function, or under
   `TYPE_CHECKING`): the plugin loads without the extra.

Why an AST test rather than import-linter: import-linter (through grimp) sees import
statements only, so the `importlib` strings that hid the engine's import of the registry would
pass it; it has no contract for "no cycles" nor for "plugins use only public modules of
another package"; and it is one more tool to pin and configure beside a rule list that fits
here in a page. There is no exceptions list: a violation is fixed in the code.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE_SRC = ROOT / "core" / "src"

#: The core's layers, lowest first: a package may import its own modules and those of lower
#: layers only. docs/architecture.md lists the same (test_the_docs_list_the_layers).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "taskfabric._version",
            "taskfabric._entrypoints",
            "taskfabric._upcalls",
            "taskfabric.lazy",
            "taskfabric.errors",
            "taskfabric.logs",
            "taskfabric.core",
            "taskfabric.config",
            "taskfabric.templates",
        ),
    ),
    (
        "stores",
        ("taskfabric.storage", "taskfabric.metadata", "taskfabric.bundles", "taskfabric.tasklogs"),
    ),
    ("types", ("taskfabric.types",)),
    ("SDK", ("taskfabric.sdk",)),
    (
        "plugin contract",
        (
            "taskfabric.plugin_api",
            "taskfabric.hookspecs",
            "taskfabric.backends",
            "taskfabric.plugins",
        ),
    ),
    ("runtime services", ("taskfabric.catalog", "taskfabric.pools")),
    ("engine", ("taskfabric.engine", "taskfabric.execute")),
    ("registry", ("taskfabric.registry",)),
    ("services", ("taskfabric.server", "taskfabric.testing")),
    ("web console", ("taskfabric.console",)),
    ("command line", ("taskfabric.cli",)),
    ("package face", ("taskfabric._wiring", "taskfabric")),
)

#: What a plugin never imports (rule 4), besides any private module or name.
PLUGIN_FORBIDDEN = ("taskfabric.engine", "taskfabric.metadata", "taskfabric.pools")


@dataclass(frozen=True)
class Import:
    """One import of `target` (a module of the tree) by `source`."""

    source: str
    target: str
    path: Path
    line: int
    how: str  # "module level", "deferred", "TYPE_CHECKING", "by name" or "attribute"
    names: tuple[str, ...] = ()  # for `from target import names`

    @property
    def runs(self) -> bool:
        """An import statement that runs; an attribute imports nothing (it needs another
        import to have run), and one under TYPE_CHECKING never runs."""
        return self.how not in ("TYPE_CHECKING", "attribute")

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    def describe(self) -> str:
        what = f"{self.target} ({', '.join(self.names)})" if self.names else self.target
        return f"{self.where()}: {self.source} imports {what} [{self.how}]"


def find_sources() -> dict[str, tuple[Path, Path]]:
    """Every module of the core and of every plugin in the tree: name -> (file, src root)."""
    roots = [CORE_SRC] + sorted(p for p in (ROOT / "plugins").glob("*/src") if p.is_dir())
    modules: dict[str, tuple[Path, Path]] = {}
    for src in roots:
        for path in sorted(src.rglob("*.py")):
            rel = path.relative_to(src).with_suffix("")
            if any(not part.isidentifier() for part in rel.parts):
                continue  # not importable (e.g. a stray build folder)
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            modules[".".join(parts)] = (path, src)
    return modules


def _type_checking_test(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "TYPE_CHECKING") or (
        isinstance(node, ast.Attribute) and node.attr == "TYPE_CHECKING"
    )


_BY_NAME_CALLS = {"import_module", "__import__", "find_spec"}
_REFERENCE = re.compile(r"^([A-Za-z_]\w*(?:\.\w+)*):[A-Za-z_][\w.]*$")


def _walk(node: ast.AST, how: str) -> Iterator[tuple[ast.AST, str]]:
    """Every node under `node` with how an import there would run."""
    for child in ast.iter_child_nodes(node):
        child_how = how
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            child_how = "deferred" if how == "module level" else how
        yield child, child_how
        if isinstance(child, ast.If) and _type_checking_test(child.test):
            for stmt in child.body:
                yield stmt, "TYPE_CHECKING"
                yield from _walk(stmt, "TYPE_CHECKING")
            for stmt in child.orelse:
                yield stmt, child_how
                yield from _walk(stmt, child_how)
            continue
        yield from _walk(child, child_how)


def read_imports(
    name: str, path: Path, source: str, modules: dict[str, tuple[Path, Path]]
) -> list[Import]:
    """The imports of module `name` (file `path`) that land on a module of the tree."""
    tree = ast.parse(source, filename=str(path))
    is_package = path.name == "__init__.py"
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    found: list[Import] = []

    def add(target: str, node: ast.AST, how: str, names: tuple[str, ...] = ()) -> None:
        resolved = resolve(target)
        if resolved is not None and resolved != name:
            found.append(Import(name, resolved, path, getattr(node, "lineno", 0), how, names))

    # `import a.b` binds `a`, `import a.b as c` binds `c` to `a.b`: attribute chains on those
    # names that reach further submodules of the tree are read below.
    bound: dict[str, str] = {}
    reached_by_attribute: set[tuple[str, int]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    bound[top] = top

    for node, how in _walk(tree, "module level"):
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Del):
            chain: list[str] = []
            part: ast.expr = node
            while isinstance(part, ast.Attribute):
                chain.insert(0, part.attr)
                part = part.value
            if isinstance(part, ast.Name) and part.id in bound:
                base = bound[part.id]
                dotted = ".".join([base, *chain])
                reached = resolve(dotted)
                if reached is not None and reached != resolve(base):
                    seen = (reached, node.lineno)
                    if seen not in reached_by_attribute:  # `a.b.c` holds `a.b` too
                        reached_by_attribute.add(seen)
                        add(reached, node, "attribute")
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, how)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            plain: list[str] = []
            for alias in node.names:
                if f"{module}.{alias.name}" in modules:
                    add(f"{module}.{alias.name}", node, how)
                else:
                    plain.append(alias.name)
            if plain:
                add(module, node, how, tuple(plain))
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0] if node.args else None
            if (
                called in _BY_NAME_CALLS
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                add(first.value, node, "by name" if how == "module level" else how)
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            match = _REFERENCE.match(node.value)
            if match:
                add(match.group(1), node, "by name" if how == "module level" else how)
    return found


@pytest.fixture(scope="module")
def modules() -> dict[str, tuple[Path, Path]]:
    return find_sources()


@pytest.fixture(scope="module")
def imports(modules: dict[str, tuple[Path, Path]]) -> list[Import]:
    found: list[Import] = []
    for name, (path, _src) in modules.items():
        found += read_imports(name, path, path.read_text(encoding="utf-8"), modules)
    return found


def is_core(module: str) -> bool:
    return module == "taskfabric" or module.startswith("taskfabric.")


def unit_of(module: str) -> str:
    """The package (or top-level module) a module belongs to: `taskfabric.engine._runner` ->
    `taskfabric.engine`; a plugin's modules -> its top-level package."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "taskfabric" and len(parts) > 1 else parts[0]


LAYER_OF = {unit: rank for rank, (_, units) in enumerate(LAYERS) for unit in units}


def find_cycle(nodes: set[str], edges: dict[str, dict[str, Import]]) -> list[Import]:
    """A shortest circle through the strongly connected `nodes`, as its imports."""
    best: list[Import] = []
    for start in sorted(nodes):
        came_from: dict[str, str] = {}
        queue = deque([start])
        while queue:
            here = queue.popleft()
            if here in edges and start in edges[here]:
                path = [here]
                while path[0] != start:
                    path.insert(0, came_from[path[0]])
                circle = [edges[a][b] for a, b in zip(path, [*path[1:], start], strict=True)]
                if not best or len(circle) < len(best):
                    best = circle
                break
            for there in sorted(edges.get(here, {})):
                if there in nodes and there != start and there not in came_from:
                    came_from[there] = here
                    queue.append(there)
    return best


def cycles(graph: dict[str, dict[str, Import]]) -> list[list[Import]]:
    """One circle for each group of nodes that import each other (Tarjan's components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, {}):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [find_cycle(group, graph) for group in groups]


def graph_of(imports: list[Import], key: str) -> dict[str, dict[str, Import]]:
    graph: dict[str, dict[str, Import]] = {}
    for imp in imports:
        source, target = (
            (unit_of(imp.source), unit_of(imp.target))
            if key == "unit"
            else (imp.source, imp.target)
        )
        if source != target:
            graph.setdefault(source, {}).setdefault(target, imp)
    return graph


def report(problems: list[str], rule: str) -> None:
    if problems:
        listing = "\n  ".join(problems)
        pytest.fail(f"{rule} ({len(problems)}):\n  {listing}", pytrace=False)


# -- the rules -----------------------------------------------------------------------------


def test_every_plugin_in_the_tree_is_scanned(modules: dict[str, tuple[Path, Path]]) -> None:
    plugin_dirs = sorted(p.name for p in (ROOT / "plugins").iterdir() if p.is_dir())
    scanned = {src.parent.name for _path, src in modules.values() if src != CORE_SRC}
    missing = [d for d in plugin_dirs if d not in scanned]
    assert not missing, f"plugins/{missing[0]} has no src/ package to scan"
    assert {"shell", "http", "spark"} <= scanned


def test_every_core_package_has_a_layer(modules: dict[str, tuple[Path, Path]]) -> None:
    units = sorted({unit_of(m) for m in modules if is_core(m)})
    report(
        [
            f"{unit}: add it to LAYERS in tests/test_layers.py and to docs/architecture.md"
            for unit in units
            if unit not in LAYER_OF
        ],
        "core packages in no layer",
    )
    assert "taskfabric.engine" in units


def test_the_core_imports_only_lower_layers(imports: list[Import]) -> None:
    problems = []
    for imp in imports:
        if not (is_core(imp.source) and is_core(imp.target)):
            continue
        source, target = unit_of(imp.source), unit_of(imp.target)
        if source == target or source not in LAYER_OF or target not in LAYER_OF:
            continue
        if LAYER_OF[target] > LAYER_OF[source]:
            problems.append(
                f"{imp.describe()}: {LAYERS[LAYER_OF[source]][0]} may not import "
                f"{LAYERS[LAYER_OF[target]][0]}"
            )
    report(problems, "imports of a higher layer")


def test_the_core_imports_no_plugin(imports: list[Import]) -> None:
    report(
        [imp.describe() for imp in imports if is_core(imp.source) and not is_core(imp.target)],
        "core modules importing a plugin",
    )


def _private(dotted: str) -> bool:
    return any(part.startswith("_") and not part.startswith("__") for part in dotted.split("."))


def test_plugins_import_only_the_public_core(imports: list[Import]) -> None:
    problems = []
    for imp in imports:
        if is_core(imp.source) or not is_core(imp.target):
            continue
        forbidden = [
            f for f in PLUGIN_FORBIDDEN if imp.target == f or imp.target.startswith(f + ".")
        ]
        if forbidden:
            problems.append(f"{imp.describe()}: plugins never import {forbidden[0]}")
        elif _private(imp.target):
            problems.append(f"{imp.describe()}: a private module of the core")
        elif any(_private(n) for n in imp.names):
            problems.append(f"{imp.describe()}: a private name of the core")
    report(problems, "plugin imports outside the public contract")


def _show(cycle: list[Import], name: Callable[[str], str]) -> str:
    return " -> ".join([name(cycle[0].source), *(name(imp.target) for imp in cycle)]) + "".join(
        f"\n      {imp.describe()}" for imp in cycle
    )


def test_no_import_circles_between_packages(imports: list[Import]) -> None:
    report(
        [_show(c, unit_of) for c in cycles(graph_of(imports, "unit"))],
        "circles between packages",
    )


def test_no_import_circles_between_modules(imports: list[Import]) -> None:
    running = [imp for imp in imports if imp.runs]
    report(
        [_show(c, str) for c in cycles(graph_of(running, "module"))],
        "circles between modules (imports that run)",
    )


def _requirement_name(requirement: str) -> str:
    found = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip())
    assert found, requirement
    return re.sub(r"[-_.]+", "-", found.group(0)).lower()


def test_plugins_import_other_plugins_only_as_declared(
    imports: list[Import], modules: dict[str, tuple[Path, Path]]
) -> None:
    """Rule 7: every import of another plugin is declared in the importer's pyproject."""
    declared: dict[str, tuple[str, set[str], set[str]]] = {}  # package -> (dist, deps, extras)
    for _path, src in modules.values():
        if src == CORE_SRC:
            continue
        project = tomllib.loads((src.parent / "pyproject.toml").read_text("utf-8"))["project"]
        deps = {_requirement_name(r) for r in project.get("dependencies", [])}
        extras = {
            _requirement_name(r)
            for group in project.get("optional-dependencies", {}).values()
            for r in group
        }
        for package in (p.name for p in src.iterdir() if (p / "__init__.py").is_file()):
            declared[package] = (_requirement_name(project["name"]), deps, extras)
    problems = []
    for imp in imports:
        source, target = imp.source.split(".")[0], imp.target.split(".")[0]
        if is_core(imp.source) or is_core(imp.target) or source == target:
            continue
        dist, deps, extras = declared[source]
        wanted = declared[target][0]
        if _private(imp.target) or any(_private(n) for n in imp.names):
            problems.append(f"{imp.describe()}: a private part of {wanted}")
        elif wanted in deps:
            continue
        elif wanted not in extras:
            problems.append(
                f"{imp.describe()}: {dist} does not declare {wanted}: add it to its "
                "pyproject.toml (dependencies, or an extra)"
            )
        elif imp.how in ("module level", "by name"):
            problems.append(
                f"{imp.describe()}: {wanted} is an extra of {dist}: import it inside the "
                "function that needs it, so that the plugin loads without it"
            )
    report(problems, "plugin imports of other plugins not declared")


def test_the_docs_list_the_layers() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert "\n## Layers\n" in text, "docs/architecture.md has no '## Layers' section"
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    listed = [
        (m.group(1), tuple(re.findall(r"`([\w.]+)`", m.group(2))))
        for m in re.finditer(r"^\d+\. \*\*(.+?)\*\*:? (.*)$", section, re.MULTILINE)
    ]
    assert listed == list(reversed(LAYERS)), (
        "the layers in docs/architecture.md (## Layers, highest first) differ from LAYERS"
    )


# -- the reader itself -------------------------------------------------------------------------

SAMPLE = '''
"""Docstring naming pkg.low:thing, which is not an import."""
from typing import TYPE_CHECKING
import importlib
from pkg import low
from . import sibling

if TYPE_CHECKING:
    from pkg.high import Thing

DRIVERS = ("pkg.high._impl:Driver",)

def later():
    from pkg.high import other
    return importlib.import_module("pkg.high._impl")

import pkg
VALUE = pkg.high.Thing
'''


def test_the_reader_sees_every_kind_of_import() -> None:
    names = ["pkg", "pkg.low", "pkg.sibling", "pkg.mid", "pkg.high", "pkg.high._impl"]
    modules = dict.fromkeys(names, (ROOT / "x.py", ROOT))
    found = {
        (imp.target, imp.how, imp.line)
        for imp in read_imports("pkg.mid", ROOT / "x.py", SAMPLE, modules)
    }
    assert found == {
        ("pkg.low", "module level", 5),
        ("pkg.sibling", "module level", 6),
        ("pkg.high", "TYPE_CHECKING", 9),
        ("pkg.high._impl", "by name", 11),
        ("pkg.high", "deferred", 14),
        ("pkg.high._impl", "deferred", 15),
        ("pkg", "module level", 17),
        ("pkg.high", "attribute", 18),
    }


def test_a_circle_is_found_and_shown() -> None:
    def imp(source: str, target: str) -> Import:
        return Import(source, target, ROOT / "x.py", 1, "deferred")

    graph = graph_of([imp("a", "b"), imp("b", "c"), imp("c", "a"), imp("c", "d")], "module")
    (circle,) = cycles(graph)
    assert [i.source for i in circle] in (["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"])
    assert cycles(graph_of([imp("a", "b"), imp("b", "c")], "module")) == []
