"""`File` and `Directory`: local paths on the way in, lazy stored blobs on the way out.

Stored blobs are immutable. A `File` or `Directory` read from a literal points at the
stored data itself when the store is local (no copy), and at a download in the work folder
otherwise; in both cases the files are made read-only (mode 0o444) and `open()` refuses
write modes, so an accidental write fails loudly instead of corrupting stored data. To
produce new data, write to `File.new(name)` / `Directory.new(name)` and return that.

Content hashes: a file's is `sha256:<hex>` of its bytes; a directory's is `sha256:<hex>` of
the lines `<relative posix path>\\0<file content hash>\\n` over its files in sorted path
order (empty folders are not part of a directory).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any
from urllib.parse import unquote

from taskfabric.storage import BlobStore

READ_ONLY = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH  # 0o444


@dataclass(frozen=True)
class Format:
    """Declares a blob's format: `Annotated[File, Format("csv")]` (the same as `File["csv"]`).

    The format is a free-form label checked by the workflow compiler (a `File["csv"]`
    output cannot feed a `File["parquet"]` input; an unlabelled `File` fits any format).
    """

    name: str


@dataclass(frozen=True)
class StoredBlob:
    """Where a blob lives in the store, and what is known about it."""

    uri: str
    content_hash: str
    size_bytes: int
    format: str
    store: BlobStore
    work_dir: Path

    @property
    def name(self) -> str:
        return unquote(self.uri.rstrip("/").rsplit("/", 1)[-1])

    def download_dir(self) -> Path:
        digest = self.content_hash.removeprefix("sha256:")[:32] or "unhashed"
        return self.work_dir / "blobs" / digest


_scratch_lock = threading.Lock()
_scratch_root: Path | None = None


def scratch_dir() -> Path:
    """A fresh, empty folder for new outputs (under one per-process folder that is removed
    when the process exits)."""
    global _scratch_root  # noqa: PLW0603 - created lazily, once per process
    with _scratch_lock:
        if _scratch_root is None:
            _scratch_root = Path(tempfile.mkdtemp(prefix="taskfabric-scratch-"))
            atexit.register(shutil.rmtree, _scratch_root, True)
        root = _scratch_root
    return Path(tempfile.mkdtemp(dir=root))


def hash_file(path: Path) -> tuple[str, int]:
    """(`sha256:<hex>`, size in bytes) of a local file."""
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256")
        size = os.fstat(fh.fileno()).st_size
    return f"sha256:{digest.hexdigest()}", size


def directory_files(path: Path) -> list[tuple[str, Path]]:
    """(relative posix path, path) of every file under `path`, sorted by relative path."""
    return sorted((p.relative_to(path).as_posix(), p) for p in path.rglob("*") if p.is_file())


def hash_directory(path: Path) -> tuple[str, int]:
    """(`sha256:<hex>`, total size) of a local directory (see the module docstring)."""
    digest = hashlib.sha256()
    total = 0
    for relative, file_path in directory_files(path):
        file_hash, size = hash_file(file_path)
        digest.update(relative.encode() + b"\0" + file_hash.encode() + b"\n")
        total += size
    return f"sha256:{digest.hexdigest()}", total


def make_read_only(path: Path) -> None:
    """chmod 0o444 a file, or every file under a directory."""
    if path.is_dir():
        for _, file_path in directory_files(path):
            file_path.chmod(READ_ONLY)
    elif path.exists():
        path.chmod(READ_ONLY)


def _materialize_file(stored: StoredBlob) -> Path:
    local = stored.store.local_path(stored.uri)
    if local is not None and local.is_file():
        return local
    target = stored.download_dir() / stored.name
    if not target.is_file():
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        stored.store.get_file(stored.uri, partial)
        partial.chmod(READ_ONLY)
        os.replace(partial, target)
    return target


def _materialize_dir(stored: StoredBlob) -> Path:
    local = stored.store.local_path(stored.uri)
    if local is not None and local.is_dir():
        return local
    target = stored.download_dir() / stored.name
    if not target.is_dir():
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        stored.store.get_dir(stored.uri, partial)
        make_read_only(partial)
        try:
            os.replace(partial, target)
        except OSError:  # another thread or process finished the same download first
            if not target.is_dir():
                raise
            shutil.rmtree(partial, ignore_errors=True)
    return target


_WRITE_MODES = frozenset("wax+")


class _Blob(os.PathLike[str]):
    _kind = "blob"

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path: Path | None = Path(path)
        self._stored: StoredBlob | None = None

    @classmethod
    def from_stored(cls, stored: StoredBlob) -> Any:
        """A lazy value for a stored blob (nothing is downloaded until `.path` is used)."""
        blob = cls.__new__(cls)
        blob._path = None
        blob._stored = stored
        return blob

    @property
    def stored(self) -> StoredBlob | None:
        """Where the blob is stored, for values read from a literal; None for local ones."""
        return self._stored

    @property
    def uri(self) -> str | None:
        return self._stored.uri if self._stored else None

    @property
    def content_hash(self) -> str | None:
        return self._stored.content_hash if self._stored else None

    @property
    def size_bytes(self) -> int | None:
        return self._stored.size_bytes if self._stored else None

    @property
    def format(self) -> str:
        return self._stored.format if self._stored else ""

    @property
    def name(self) -> str:
        """The base name of the file or directory."""
        if self._stored is not None:
            return self._stored.name
        assert self._path is not None
        return self._path.name

    def _materialize(self, stored: StoredBlob) -> Path:
        raise NotImplementedError

    @property
    def path(self) -> Path:
        """A local path to the data (a stored blob is fetched on first use; read-only)."""
        if self._path is None:
            assert self._stored is not None
            self._path = self._materialize(self._stored)
        return self._path

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        if self._stored is not None:
            return f"{type(self).__name__}({self._stored.uri!r}, {self._stored.content_hash})"
        return f"{type(self).__name__}({str(self._path)!r})"


class File(_Blob):
    """A single file passed between tasks.

    Make one from a local path (`File("out.csv")`, or `File.new("out.csv")` for a fresh
    path in a scratch folder that you then write to) and return it from a task: it is
    hashed (sha256) and uploaded under the node's raw prefix. A `File` received as an input
    is lazy: `.path`, `.open()` and `os.fspath()` fetch it on first use; it is read-only.
    Returning a received `File` passes it through without copying or re-hashing.

    Declare a format with `Annotated[File, Format("csv")]` or the shorthand `File["csv"]`
    (the same type at runtime; use the Annotated form where mypy checks the annotation).
    """

    _kind = "file"

    def __class_getitem__(cls, fmt: str) -> Any:
        if not isinstance(fmt, str):
            raise TypeError(f'{cls.__name__}[...] takes a format name, e.g. {cls.__name__}["csv"]')
        return Annotated[cls, Format(fmt)]

    @classmethod
    def new(cls, name: str = "file") -> File:
        """A File at a fresh path `<new scratch folder>/<name>` (not created: write it)."""
        return cls(scratch_dir() / name)

    def _materialize(self, stored: StoredBlob) -> Path:
        return _materialize_file(stored)

    def open(
        self, mode: str = "r", *, encoding: str | None = None, newline: str | None = None
    ) -> IO[Any]:
        """Open the file; write modes are refused for stored (immutable) files."""
        if self._stored is not None and _WRITE_MODES & set(mode):
            raise PermissionError(
                f"{self._stored.uri} is a stored blob and cannot be modified: write a new "
                "file (File.new(name)) and return that instead"
            )
        if "b" in mode:
            return self.path.open(mode)
        return self.path.open(mode, encoding=encoding or "utf-8", newline=newline)

    def read_bytes(self) -> bytes:
        return self.path.read_bytes()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.path.read_text(encoding=encoding)


class Directory(_Blob):
    """A directory of files passed between tasks (same rules as `File`).

    `Directory.new(name)` gives a fresh, created, empty folder to fill. Iterating a
    Directory yields the local paths of its files, recursively, in sorted order.
    """

    _kind = "directory"

    def __class_getitem__(cls, fmt: str) -> Any:
        if not isinstance(fmt, str):
            raise TypeError(f'{cls.__name__}[...] takes a format name, e.g. {cls.__name__}["csv"]')
        return Annotated[cls, Format(fmt)]

    @classmethod
    def new(cls, name: str = "dir") -> Directory:
        """A Directory at a fresh, empty folder `<new scratch folder>/<name>`."""
        path = scratch_dir() / name
        path.mkdir()
        return cls(path)

    def _materialize(self, stored: StoredBlob) -> Path:
        return _materialize_dir(stored)

    def files(self) -> list[Path]:
        """Local paths of every file, recursively, sorted by relative path."""
        return [path for _, path in directory_files(self.path)]

    def __iter__(self) -> Iterator[Path]:
        return iter(self.files())
