"""Regenerate the Python modules and mypy stubs from the .proto files.

Usage: python protos/generate.py [--check]

`taskfabric/core/v1/*.proto` become `core/src/taskfabric/core/v1/*_pb2.py(i)`. A plugin's
`taskfabric/plugins/<name>.proto` (package `taskfabric.plugins.<name>`) becomes
`plugins/<name>/src/taskfabric_<name>/<name>_pb2.py(i)`: protoc writes it under
`taskfabric/plugins/`, which in Python is the core's plugin registry, so the modules are moved
into the plugin's own package and the module names inside them rewritten to match. Nothing is
ever generated under `core/` for a plugin.

With --check nothing is written: the generated output is compared with the
committed modules and the script exits 1 listing every file that differs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
CORE_PROTOS = "taskfabric/core/v1"
PLUGIN_PROTOS = "taskfabric/plugins"


@dataclass(frozen=True)
class Target:
    """Where the modules generated from some .proto files are committed."""

    protos: tuple[str, ...]  # .proto files, relative to PROTO_ROOT
    out_dir: Path  # the folder of the generated modules
    package: str  # the Python package of out_dir

    def module(self, proto: str) -> str:
        return f"{self.package}.{Path(proto).stem}_pb2"


def _protoc_module(proto: str) -> str:
    """The module name protoc gives a .proto file: its path, dotted."""
    return proto.removesuffix(".proto").replace("/", ".") + "_pb2"


def _plugin_dir(stem: str) -> Path:
    """plugins/<name>/ of the plugin whose proto is <stem>.proto (`aws_batch` -> aws-batch)."""
    for name in (stem.replace("_", "-"), stem):
        if (REPO_ROOT / "plugins" / name).is_dir():
            return REPO_ROOT / "plugins" / name
    return REPO_ROOT / "plugins" / stem.replace("_", "-")


def targets() -> list[Target]:
    """The core's protos, then one target per plugin proto."""
    core = sorted(
        str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / CORE_PROTOS).glob("*.proto")
    )
    found = [Target(tuple(core), REPO_ROOT / "core" / "src" / CORE_PROTOS, "taskfabric.core.v1")]
    for proto in sorted((PROTO_ROOT / PLUGIN_PROTOS).glob("*.proto")):
        package = f"taskfabric_{proto.stem}"
        found.append(
            Target(
                (str(proto.relative_to(PROTO_ROOT)),),
                _plugin_dir(proto.stem) / "src" / package,
                package,
            )
        )
    return found


def _mypy_plugin() -> str:
    """mypy-protobuf's protoc plugin, installed beside this interpreter."""
    found = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("protoc-gen-mypy not found: pip install mypy-protobuf")
    return found


def _relocate(text: str, moves: dict[str, str]) -> str:
    """Rewrite references to moved modules (imports and the module name protoc embeds)."""
    for old, new in moves.items():
        old_pkg, _, old_mod = old.rpartition(".")
        new_pkg, _, new_mod = new.rpartition(".")
        text = text.replace(f"'{old}'", f"'{new}'")
        text = text.replace(
            f"from {old_pkg} import {old_mod} ", f"from {new_pkg} import {new_mod} "
        )
    return text


def generate(out: Path, all_targets: list[Target]) -> dict[Path, Path]:
    """Generate every target's modules under `out`; map each to its committed path."""
    protos = [p for t in all_targets for p in t.protos]
    include = str(resources.files("grpc_tools") / "_proto")
    raw = out / "protoc"
    raw.mkdir(parents=True)
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        f"--python_out={raw}",
        f"--mypy_out={raw}",
        *protos,
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code}")
    moves = {
        _protoc_module(p): t.module(p)
        for t in all_targets
        for p in t.protos
        if _protoc_module(p) != t.module(p)
    }
    produced: dict[Path, Path] = {}
    for t in all_targets:
        for proto in t.protos:
            for suffix in (".py", ".pyi"):
                source = raw / (proto.removesuffix(".proto") + "_pb2" + suffix)
                name = f"{Path(proto).stem}_pb2{suffix}"
                fresh = out / "modules" / t.package / name
                fresh.parent.mkdir(parents=True, exist_ok=True)
                fresh.write_text(_relocate(source.read_text(encoding="utf-8"), moves), "utf-8")
                produced[fresh] = t.out_dir / name
    return produced


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    opts = parser.parse_args()
    all_targets = targets()
    with tempfile.TemporaryDirectory() as tmp:
        produced = generate(Path(tmp), all_targets)
        if not opts.check:
            for fresh, committed in produced.items():
                if not committed.parent.is_dir():
                    raise SystemExit(
                        f"{_rel(committed.parent)} does not exist: create the plugin's package "
                        "before generating its protobuf modules into it"
                    )
                shutil.copyfile(fresh, committed)
                print(f"wrote {_rel(committed)}")
            return 0
        stale: list[str] = []
        for fresh, committed in produced.items():
            if not committed.exists() or committed.read_bytes() != fresh.read_bytes():
                stale.append(_rel(committed))
        expected = set(produced.values())
        for t in all_targets:
            for committed in sorted(t.out_dir.glob("*_pb2.py*")):
                if committed not in expected:
                    stale.append(f"{_rel(committed)} (no .proto for it)")
        core_plugins = REPO_ROOT / "core" / "src" / PLUGIN_PROTOS
        for misplaced in sorted(core_plugins.rglob("*_pb2.py*")):
            stale.append(f"{_rel(misplaced)} (plugin modules belong in the plugin's package)")
    if stale:
        print("generated protobuf modules are out of date; run `python protos/generate.py`:")
        for name in stale:
            print(f"  {name}")
        return 1
    print("generated protobuf modules are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
