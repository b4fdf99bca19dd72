"""The sandbox backend's fork server: each attempt, forked from one pre-started Python, runs in
namespaces of its own (pid 1 of its own pid namespace, uid 65534, no capabilities,
`no_new_privs`), sees none of the engine's files, and never sees another attempt's processes;
`fork_server = false` runs the same attempt through `bwrap` and a fresh Python."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from taskfabric.config import load_config
from taskfabric.engine import Engine
from taskfabric.plugins import Plugins, use_plugins
from taskfabric.sdk import map_task, task, workflow
from taskfabric.testing._harness import config_text, launch, python_outputs


def _status_field(name: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    return ""


@task
def look(item: int, secret: str) -> str:
    """What the attempt's process sees of itself and of the machine."""
    pids = sorted(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit())
    return json.dumps(
        {
            "item": item,
            "pid": os.getpid(),
            "pids": pids,
            "uid": os.getuid(),
            "groups": _status_field("Groups"),
            "capabilities": _status_field("CapEff"),
            "bounding": _status_field("CapBnd"),
            "no_new_privs": _status_field("NoNewPrivs"),
            "secret_visible": os.path.exists(secret),
            "environment": sorted(os.environ),
        }
    )


@workflow
def look_around(items: list[int], secret: str) -> list[str]:
    found: list[str] = map_task(look)(item=items, secret=secret)
    return found


def _run(tmp_path: Path, fork_server: bool) -> list[dict[str, Any]]:
    secret = tmp_path / "taskfabric.toml"
    backend = {"driver": "sandbox", "fork_server": fork_server}
    secret.write_text(
        config_text(data_root=tmp_path / "data", backend=backend, task_type="python", parallelism=4)
    )
    with use_plugins(Plugins(autoload=False)):
        engine = Engine(load_config(secret))
        try:
            result = launch(
                engine,
                look_around,
                {"items": [0, 1, 2, 3], "secret": str(secret)},
                task_type="python",
                deadline=300,
            )
            found = python_outputs(engine, look_around, result)
        finally:
            engine.close()
    return [json.loads(text) for text in found]


def test_each_attempt_of_the_fork_server_is_alone_in_its_namespaces(tmp_path: Path) -> None:
    seen = _run(tmp_path, fork_server=True)
    assert [s["item"] for s in seen] == [0, 1, 2, 3]
    for one in seen:
        # pid 1 of its own pid namespace, whose /proc holds no other attempt's process
        assert one["pid"] == 1, one
        assert one["pids"] == [1], one
        assert one["uid"] == 65534, one
        # none of the engine's supplementary groups (root's 0, say): unmapped ones show as
        # the overflow id 65534
        assert set(one["groups"].split()) <= {"65534"}, one
        assert int(one["capabilities"], 16) == 0, one
        assert int(one["bounding"], 16) == 0, one
        assert one["no_new_privs"] == "1", one
        assert not one["secret_visible"], one
        assert "TASKFABRIC_CONFIG" not in one["environment"], one


@pytest.mark.parametrize("fork_server", [False])
def test_without_the_fork_server_each_attempt_runs_bwrap(tmp_path: Path, fork_server: bool) -> None:
    seen = _run(tmp_path, fork_server=fork_server)
    assert [s["item"] for s in seen] == [0, 1, 2, 3]
    for one in seen:
        assert one["uid"] == 65534, one
        assert int(one["capabilities"], 16) == 0, one
        assert not one["secret_visible"], one
        assert one["pid"] != 1, one  # bubblewrap's own process is pid 1 of its namespace


def test_plugins_check_says_whether_the_fork_server_can_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskfabric.backends import _forkserver

    path = tmp_path / "taskfabric.toml"
    backend = {"driver": "sandbox"}
    path.write_text(
        config_text(data_root=tmp_path / "data", backend=backend, task_type="python", parallelism=1)
    )
    with use_plugins(Plugins(autoload=False)):
        engine = Engine(load_config(path))
        backend = engine.backends.create("conformance", engine.config)
        try:
            result = backend.check()
        finally:
            backend.close()
            engine.close()
    assert result.ok, result.message
    assert "in a sandbox; its fork server can run here; bounds: " in result.message, result.message
    # What it says on a machine whose system calls it does not know.
    monkeypatch.setattr(_forkserver.platform, "machine", lambda: "riscv64")
    (unmet,) = _forkserver.unmet_needs()
    assert unmet == (
        "the architecture riscv64 (the fork server knows the system calls of aarch64 and "
        "x86_64 only)"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts on the host's side need root")
@pytest.mark.parametrize("mount_setattr", [True, False], ids=["mount_setattr", "remounts"])
def test_mounts_below_a_read_only_bind_are_read_only_too(
    tmp_path: Path, mount_setattr: bool
) -> None:
    """A read-only folder with a writable mount below it (the recursive bind brings it
    along), also when the folder is named through a link: both are read-only in the
    sandbox, while a read-write bind stays writable; with `mount_setattr` (Linux 5.12) and
    with the remounts of older kernels. Run in a child with a mount namespace of its own,
    so the host's mounts are not touched."""
    import errno

    from taskfabric.backends import _forkserver as fs

    if mount_setattr and not fs._has_mount_setattr():
        pytest.skip("this kernel has no mount_setattr (Linux 5.12)")

    plain, real, box, base = (tmp_path / n for n in ("plain", "real", "box", "base"))
    for folder in (plain / "sub", real / "sub", box, base):
        folder.mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            fs._Kernel.mount_setattr = mount_setattr
            fs._call(fs._libc.unshare(fs.CLONE_NEWNS), "unshare")
            fs._mount(None, "/", None, fs.MS_REC | fs.MS_PRIVATE)
            for folder in (plain / "sub", real / "sub"):
                fs._mount("tmpfs", str(folder), "tmpfs", 0, "mode=0777")  # writable
            plan = fs._Plan(
                ["--ro-bind", str(plain), str(plain), "--ro-bind", str(link), str(link)]
                + ["--bind", str(box), str(box)]
            )
            fs._build_root(plan, str(base))
            found = []
            for path in (plain / "x", plain / "sub" / "x", link / "sub" / "x", box / "x"):
                try:
                    with open(path, "w"):
                        found.append("written")
                except OSError as exc:
                    found.append(errno.errorcode.get(exc.errno or 0, str(exc)))
            os.write(write, json.dumps(found).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        found = json.loads(fh.read() or "null")
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert found == ["EROFS", "EROFS", "EROFS", "written"]
