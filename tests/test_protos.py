"""The committed protobuf modules are exactly what the .proto files generate."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_generated_modules_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "up to date" in proc.stdout


def test_check_fails_on_a_stale_module(tmp_path: Path) -> None:
    # a copy of the tree with one generated module edited must fail the check
    copy = tmp_path / "repo"
    (copy / "protos").mkdir(parents=True)
    subprocess.run(
        ["cp", "-r", str(REPO / "protos" / "taskfabric"), str(copy / "protos")], check=True
    )
    (copy / "protos" / "generate.py").write_text((REPO / "protos" / "generate.py").read_text())
    out = copy / "core" / "src" / "taskfabric" / "core" / "v1"
    out.mkdir(parents=True)
    for f in (REPO / "core" / "src" / "taskfabric" / "core" / "v1").glob("*_pb2.py*"):
        (out / f.name).write_text(f.read_text())
    stale = out / "types_pb2.py"
    stale.write_text(stale.read_text() + "\n# edited by hand\n")
    proc = subprocess.run(
        [sys.executable, str(copy / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "core/src/taskfabric/core/v1/types_pb2.py" in proc.stdout
