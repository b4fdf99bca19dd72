"""Code bundles: deterministic, content-addressed, safe to extract, loaded once per module."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
from registry_helpers import write_tree

from taskfabric.bundles import (
    BundleError,
    bundle_files,
    create_bundle,
    extract_bundle,
    upload_bundle,
)
from taskfabric.storage import LocalBlobStore

TREE = {
    "pkg/__init__.py": "",
    "pkg/mod.py": "def answer() -> int:\n    return 42\n",
    "pkg/data/table.csv": "a,b\n1,2\n",
    "main.py": "print('hi')\n",
}

JUNK = {
    "pkg/__pycache__/mod.cpython-311.pyc": "junk",
    "pkg/mod.pyc": "junk",
    ".git/config": "[core]\n",
    ".venv/lib/site.py": "",
    "env2/pyvenv.cfg": "home = /usr/bin\n",
    "env2/lib/x.py": "",
    ".env": "SECRET=1\n",
    "pkg/.hidden/x.py": "",
}


def test_same_tree_gives_the_same_bytes_wherever_and_whenever_it_was_written(
    tmp_path: Path,
) -> None:
    a = write_tree(tmp_path / "a", TREE)
    # written in another order, at other times, with junk around: the same bundle
    b = tmp_path / "b"
    for name in reversed(list(TREE)):
        write_tree(b, {name: TREE[name]})
        os.utime(b / name, (1_000_000, 1_000_000 + len(name)))
    write_tree(b, JUNK)
    first, second = create_bundle(a), create_bundle(b)
    assert first.data == second.data and first.digest == second.digest
    assert [name for name, _ in bundle_files(b)] == [
        "main.py",
        "pkg/__init__.py",
        "pkg/data/table.csv",
        "pkg/mod.py",
    ]
    with tarfile.open(fileobj=io.BytesIO(first.data), mode="r:gz") as tar:
        infos = tar.getmembers()
    assert {(i.mtime, i.uid, i.gid, i.uname, i.gname) for i in infos} == {(0, 0, 0, "", "")}
    # any change of content changes the digest
    (b / "pkg" / "mod.py").write_text("def answer() -> int:\n    return 43\n")
    assert create_bundle(b).digest != first.digest


def test_include_limits_the_bundle_to_some_paths(tmp_path: Path) -> None:
    root = write_tree(tmp_path, TREE)
    bundle = create_bundle(root, ("pkg",))
    assert [n for n, _ in bundle_files(root, ("pkg",))] == [
        "pkg/__init__.py",
        "pkg/data/table.csv",
        "pkg/mod.py",
    ]
    assert bundle.digest != create_bundle(root).digest


def test_upload_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    bundle = create_bundle(write_tree(tmp_path / "src", TREE))
    uri = upload_bundle(store, bundle.data)
    assert uri.endswith(f"bundles/{bundle.digest}.tar.gz")
    mtime = (tmp_path / "blobs" / "bundles" / f"{bundle.digest}.tar.gz").stat().st_mtime_ns
    time.sleep(0.01)
    assert upload_bundle(store, bundle.data) == uri
    assert (tmp_path / "blobs" / "bundles" / f"{bundle.digest}.tar.gz").stat().st_mtime_ns == mtime


def test_extract_once_per_digest_even_with_concurrent_extractors(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    uri = upload_bundle(store, create_bundle(write_tree(tmp_path / "src", TREE)).data)
    cache = tmp_path / "cache"
    results: list[Path] = []
    errors: list[BaseException] = []

    def extract() -> None:
        try:
            results.append(extract_bundle(store, uri, cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=extract) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    folder = results[0]
    assert (folder / "pkg" / "mod.py").read_text().endswith("return 42\n")
    assert sorted(p.name for p in cache.iterdir()) == [folder.name]  # no temp folders left


def _evil_bundle(store: LocalBlobStore, build: object) -> str:
    """Upload a hand-made tar.gz (bypassing create_bundle)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as tar:
        build(tar)  # type: ignore[operator]
    return upload_bundle(store, raw.getvalue())


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **kw: object) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


@pytest.mark.parametrize(
    "member",
    [
        {"name": "../escaped.py"},
        {"name": "pkg/../../escaped.py"},
        {"name": "/tmp/escaped.py"},
        {"name": "link.py", "type": tarfile.SYMTYPE, "linkname": "../../escaped.py"},
        {"name": "hard.py", "type": tarfile.LNKTYPE, "linkname": "/etc/passwd"},
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink", "hardlink"],
)
def test_extraction_refuses_paths_outside_the_bundle(
    tmp_path: Path, member: dict[str, object]
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")

    def build(tar: tarfile.TarFile) -> None:
        _add(tar, "ok.py")
        name = str(member["name"])
        extra = {k: v for k, v in member.items() if k != "name"}
        _add(tar, name, **extra)  # type: ignore[arg-type]

    uri = _evil_bundle(store, build)
    cache = tmp_path / "deep" / "cache"
    with pytest.raises(BundleError, match="unsafe path|link or special file"):
        extract_bundle(store, uri, cache)
    assert not (tmp_path / "escaped.py").exists()
    assert not (tmp_path / "deep" / "escaped.py").exists()
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-extracted is kept


def test_a_corrupt_blob_is_refused(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    bundle = create_bundle(write_tree(tmp_path / "src", TREE))
    uri = upload_bundle(store, bundle.data)
    other = create_bundle(write_tree(tmp_path / "other", {"x.py": "X = 1\n"}))
    store.put_bytes(uri, other.data)  # the content no longer matches the name
    with pytest.raises(BundleError, match="does not match its digest"):
        extract_bundle(store, uri, tmp_path / "cache")


LOADER = """
import sys
from pathlib import Path
from taskfabric.bundles import load_bundled
from taskfabric.storage import LocalBlobStore
store = LocalBlobStore(Path(sys.argv[1]))
code = {"bundle": sys.argv[2], "root": "", "module": "pkg.mod", "object": "answer"}
print(load_bundled(code, store, Path(sys.argv[3]))())
"""


def test_load_bundled_imports_from_the_bundle_and_refuses_a_second_bundle_of_a_module(
    tmp_path: Path,
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    v1 = upload_bundle(store, create_bundle(write_tree(tmp_path / "v1", TREE)).data)
    v2_tree = dict(TREE, **{"pkg/mod.py": "def answer() -> int:\n    return 7\n"})
    v2 = upload_bundle(store, create_bundle(write_tree(tmp_path / "v2", v2_tree)).data)
    # Each version in its own process (as workers run them): each sees its own code.
    outputs = []
    for uri in (v1, v2):
        proc = subprocess.run(
            [sys.executable, "-c", LOADER, str(tmp_path / "blobs"), uri, str(tmp_path / "c")],
            capture_output=True,
            text=True,
            check=True,
        )
        outputs.append(proc.stdout.strip())
    assert outputs == ["42", "7"]
    # In one process, a second bundle of the same module is an error, not a silent reuse.
    script = LOADER + (
        "code2 = dict(code, bundle=sys.argv[4])\n"
        "print(load_bundled(code, store, Path(sys.argv[3]))())\n"
        "load_bundled(code2, store, Path(sys.argv[3]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "blobs"), v1, str(tmp_path / "c"), v2],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout.split() == ["42", "42"]
    assert "module 'pkg' is already loaded in this process from another code bundle" in (
        proc.stderr
    )
