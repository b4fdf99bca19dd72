"""Code bundles: a source tree as a deterministic, content-addressed tar.gz in the blob store.

The digest is the sha256 of the *uncompressed* tar, so it does not depend on the zlib that
compressed it: the same tree gives the same digest on every machine. Entries are sorted, with
fixed mtimes, owners and modes; caches, virtualenvs, version control folders and hidden files
(`.env` may hold secrets) are left out.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import re
import secrets
import shutil
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from taskfabric.errors import TaskfabricError
from taskfabric.storage import BlobStore

#: Folder names never bundled; hidden folders (".git", ".venv", ...) and virtualenvs (folders
#: with a pyvenv.cfg) are skipped too.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules"})
#: File suffixes never bundled.
SKIPPED_SUFFIXES = (".pyc", ".pyo")

_DIGEST = re.compile(r"^[0-9a-f]{64}$")


class BundleError(TaskfabricError):
    """A code bundle cannot be made, stored, extracted or loaded."""


@dataclass(frozen=True)
class Bundle:
    """A bundle's bytes (tar.gz) and its digest (sha256 hex of the uncompressed tar)."""

    data: bytes
    digest: str

    @property
    def size(self) -> int:
        return len(self.data)


def _walk(root: Path, rel: str) -> Iterator[tuple[str, Path]]:
    """(posix name in the bundle, file) for every file to bundle under `root / rel`."""
    start = root / rel if rel else root
    if start.is_file():
        yield PurePosixPath(*Path(rel).parts).as_posix(), start
        return
    for folder, dirs, files in os.walk(start):
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and d not in SKIPPED_DIRS
            and not Path(folder, d).is_symlink()
            and not Path(folder, d, "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            path = Path(folder, name)
            if name.startswith(".") or name.endswith(SKIPPED_SUFFIXES):
                continue
            if not path.is_file():  # broken links, sockets, fifos
                continue
            yield path.relative_to(root).as_posix(), path


def bundle_files(root: Path, include: Sequence[str] = ("",)) -> list[tuple[str, Path]]:
    """The files `create_bundle` would pack: (name in the bundle, path), sorted by name."""
    found: dict[str, Path] = {}
    for rel in include:
        for name, path in _walk(root, rel):
            found[name] = path
    return sorted(found.items())


def create_bundle(root: Path, include: Sequence[str] = ("",)) -> Bundle:
    """Pack the source tree under `root` (or only the paths `include`, relative to `root`)."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"cannot bundle {root}: not a folder")
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in bundle_files(root, include):
            data = path.read_bytes()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            info.mode = 0o755 if path.stat().st_mode & stat.S_IXUSR else 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=6) as gz:
        gz.write(tar_bytes)
    return Bundle(packed.getvalue(), hashlib.sha256(tar_bytes).hexdigest())


def _untar(data: bytes) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise BundleError(f"not a gzip-compressed code bundle: {exc}") from exc


def bundle_digest(data: bytes) -> str:
    """The digest of a bundle's bytes (sha256 of the uncompressed tar)."""
    return hashlib.sha256(_untar(data)).hexdigest()


def bundle_uri(store: BlobStore, digest: str) -> str:
    return store.uri("bundles", f"{digest}.tar.gz")


def upload_bundle(store: BlobStore, data: bytes) -> str:
    """Store a bundle under `bundles/<digest>.tar.gz` (nothing to do if it is there)."""
    uri = bundle_uri(store, bundle_digest(data))
    if not store.exists(uri):
        store.put_bytes(uri, data)
    return uri


def _digest_of_uri(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    digest = name.removesuffix(".tar.gz")
    if not _DIGEST.match(digest):
        raise BundleError(f"{uri} is not a code bundle URI (bundles/<sha256>.tar.gz)")
    return digest


def _safe_members(
    tar: tarfile.TarFile, where: str
) -> Iterator[tuple[tarfile.TarInfo, PurePosixPath]]:
    for member in tar:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or not path.parts or "\\" in member.name:
            raise BundleError(f"{where}: unsafe path '{member.name}' in the bundle; refused")
        if member.isdir():
            continue
        if not member.isreg():
            raise BundleError(
                f"{where}: '{member.name}' is a link or special file; bundles hold only "
                "regular files"
            )
        yield member, path


def bundle_members(data: bytes) -> dict[str, str]:
    """Name -> sha256 of every file in a bundle (to show what changed between two)."""
    members: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(_untar(data)), mode="r:") as tar:
        for member, path in _safe_members(tar, "bundle"):
            fh = tar.extractfile(member)
            members[path.as_posix()] = hashlib.sha256(fh.read() if fh else b"").hexdigest()
    return members


def read_member(data: bytes, name: str) -> bytes | None:
    """One file of a bundle, or None."""
    with tarfile.open(fileobj=io.BytesIO(_untar(data)), mode="r:") as tar:
        for member, path in _safe_members(tar, "bundle"):
            if path.as_posix() == name:
                fh = tar.extractfile(member)
                return fh.read() if fh else b""
    return None


def extract_bundle(store: BlobStore, uri: str, cache_root: Path) -> Path:
    """The folder holding the bundle at `uri`, extracted once per digest under `cache_root`.

    Extraction goes to a temporary folder renamed into place, so a folder that exists is
    complete; concurrent extractors (threads or processes) race harmlessly, the loser's copy
    is thrown away. Absolute paths, `..`, links and special files in the tar are refused.
    """
    digest = _digest_of_uri(uri)
    target = Path(cache_root) / digest
    if target.is_dir():
        return target
    data = store.get_bytes(uri)
    tar_bytes = _untar(data)
    if hashlib.sha256(tar_bytes).hexdigest() != digest:
        raise BundleError(f"{uri}: content does not match its digest; the blob is corrupt")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{digest[:16]}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes), mode="r:") as tar:
            for member, path in _safe_members(tar, uri):
                dest = tmp.joinpath(*path.parts)
                dest.parent.mkdir(parents=True, exist_ok=True)
                fh = tar.extractfile(member)
                dest.write_bytes(fh.read() if fh else b"")
                dest.chmod(0o755 if member.mode & stat.S_IXUSR else 0o644)
        try:
            tmp.rename(target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another extractor won
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
