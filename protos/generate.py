"""Regenerate the Python modules and mypy stubs from the .proto files.

Usage: python protos/generate.py [--check]

With --check nothing is written: the generated output is compared with the
committed modules and the script exits 1 listing every file that differs.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

PROTO_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PROTO_ROOT.parent
# (proto folder relative to PROTO_ROOT, output root for generated modules)
TARGETS: tuple[tuple[str, Path], ...] = (("taskfabric/core/v1", REPO_ROOT / "core" / "src"),)


def _mypy_plugin() -> str:
    """mypy-protobuf's protoc plugin, installed beside this interpreter."""
    found = shutil.which("protoc-gen-mypy", path=str(Path(sys.executable).parent))
    if found is None:
        raise SystemExit("protoc-gen-mypy not found: pip install mypy-protobuf")
    return found


def _generate(proto_dir: str, out_root: Path) -> list[Path]:
    protos = sorted((PROTO_ROOT / proto_dir).glob("*.proto"))
    include = str(resources.files("grpc_tools") / "_proto")
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{include}",
        f"--plugin=protoc-gen-mypy={_mypy_plugin()}",
        f"--python_out={out_root}",
        f"--mypy_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    code = protoc.main(args)
    if code != 0:
        raise SystemExit(f"protoc failed with exit code {code} for {proto_dir}")
    generated = []
    for p in protos:
        stem = out_root / proto_dir / p.stem
        generated += [stem.with_name(p.stem + "_pb2.py"), stem.with_name(p.stem + "_pb2.pyi")]
    return generated


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    opts = parser.parse_args()
    if not opts.check:
        for proto_dir, out_root in TARGETS:
            for path in _generate(proto_dir, out_root):
                print(f"wrote {path.relative_to(REPO_ROOT)}")
        return 0
    stale: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for proto_dir, out_root in TARGETS:
            tmp_root = Path(tmp) / out_root.relative_to(REPO_ROOT)
            tmp_root.mkdir(parents=True, exist_ok=True)
            for fresh in _generate(proto_dir, tmp_root):
                committed = out_root / fresh.relative_to(tmp_root)
                if not committed.exists() or not filecmp.cmp(fresh, committed, shallow=False):
                    stale.append(str(committed.relative_to(REPO_ROOT)))
            for committed in (out_root / proto_dir).glob("*_pb2.py*"):
                if not (tmp_root / committed.relative_to(out_root)).exists():
                    stale.append(f"{committed.relative_to(REPO_ROOT)} (no .proto for it)")
    if stale:
        print("generated protobuf modules are out of date; run `python protos/generate.py`:")
        for name in stale:
            print(f"  {name}")
        return 1
    print("generated protobuf modules are up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
