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


def _copy_of_the_tree(tmp_path: Path) -> Path:
    """protos/ and every committed generated module (core and plugins), in a scratch repo."""
    copy = tmp_path / "repo"
    (copy / "protos").mkdir(parents=True)
    subprocess.run(
        ["cp", "-r", str(REPO / "protos" / "taskfabric"), str(copy / "protos")], check=True
    )
    (copy / "protos" / "generate.py").write_text((REPO / "protos" / "generate.py").read_text())
    for module in [*REPO.glob("core/src/**/*_pb2.py*"), *REPO.glob("plugins/*/src/**/*_pb2.py*")]:
        target = copy / module.relative_to(REPO)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(module.read_text())
    return copy


def _check(copy: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(copy / "protos" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )


def test_plugin_modules_are_generated_into_the_plugin_package() -> None:
    # protos/taskfabric/plugins/shell.proto -> plugins/shell/src/taskfabric_shell/shell_pb2.py
    shell = REPO / "plugins" / "shell" / "src" / "taskfabric_shell"
    assert (shell / "shell_pb2.py").is_file() and (shell / "shell_pb2.pyi").is_file()
    # ... under the module name it is imported as, and never under the core's plugin registry
    assert "'taskfabric_shell.shell_pb2'" in (shell / "shell_pb2.py").read_text()
    assert not list((REPO / "core" / "src" / "taskfabric" / "plugins").rglob("*_pb2.py*"))


def test_check_fails_on_a_stale_plugin_module(tmp_path: Path) -> None:
    copy = _copy_of_the_tree(tmp_path)
    assert _check(copy).returncode == 0
    stale = copy / "plugins" / "shell" / "src" / "taskfabric_shell" / "shell_pb2.pyi"
    stale.write_text(stale.read_text() + "\n# edited by hand\n")
    proc = _check(copy)
    assert proc.returncode == 1
    assert "plugins/shell/src/taskfabric_shell/shell_pb2.pyi" in proc.stdout


def test_check_fails_on_a_plugin_module_generated_under_the_core(tmp_path: Path) -> None:
    copy = _copy_of_the_tree(tmp_path)
    misplaced = copy / "core" / "src" / "taskfabric" / "plugins" / "shell_pb2.py"
    misplaced.parent.mkdir(parents=True)
    misplaced.write_text("# protoc's default location\n")
    proc = _check(copy)
    assert proc.returncode == 1
    assert "core/src/taskfabric/plugins/shell_pb2.py (plugin modules belong in" in proc.stdout
