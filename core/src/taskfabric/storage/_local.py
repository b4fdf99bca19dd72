"""A blob store on the local file system (the default)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from taskfabric.storage._base import BlobNotFoundError, BlobStore


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore(BlobStore):
    """Blobs as files under a root folder, addressed by `file://` URIs.

    Writes go to a temporary file in the target's folder and are renamed into place, so a
    crash leaves either the old blob, the new blob, or a stray temporary file that is never
    read. With `durable=True` the data and the rename are also fsynced (slower; for hosts
    where power loss matters more than speed).
    """

    scheme = "file"

    def __init__(self, root: Path | str, *, durable: bool = False) -> None:
        self.root = Path(root).expanduser().resolve()
        self.durable = durable
        self.root.mkdir(parents=True, exist_ok=True)
        self._known_dirs: set[Path] = set()

    @classmethod
    def from_uri(cls, uri: str) -> LocalBlobStore:
        # file:// URIs are absolute paths: a store rooted at / serves any of them.
        return cls("/")

    @classmethod
    def from_root(cls, root_uri: str, options: Mapping[str, Any]) -> LocalBlobStore:
        unknown = sorted(set(options) - {"durable"})
        if unknown:
            raise ValueError(
                f"the local blob store takes no option {', '.join(map(repr, unknown))} "
                "([storage] options are for the driver of blob_root's scheme)"
            )
        return cls(cls._path_of(root_uri), durable=bool(options.get("durable", False)))

    def uri(self, *parts: str) -> str:
        path = self.root.joinpath(*[p.strip("/") for p in parts if p])
        return path.as_uri()

    @staticmethod
    def _path_of(uri: str) -> Path:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise ValueError(f"LocalBlobStore cannot handle {uri!r}: only file:// URIs")
        return Path(unquote(parsed.path))

    def _path(self, uri: str) -> Path:
        return self._path_of(uri)

    def local_path(self, uri: str) -> Path | None:
        return self._path(uri)

    def _ensure_dir(self, directory: Path) -> None:
        if directory not in self._known_dirs:
            directory.mkdir(parents=True, exist_ok=True)
            self._known_dirs.add(directory)

    def put_bytes(self, uri: str, data: bytes) -> None:
        target = self._path(uri)
        self._ensure_dir(target.parent)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident():x}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            if self.durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if self.durable:
            _fsync_dir(target.parent)

    def get_bytes(self, uri: str) -> bytes:
        try:
            return self._path(uri).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            raise BlobNotFoundError(uri) from None

    def exists(self, uri: str) -> bool:
        return self._path(uri).exists()

    def put_file(self, local_path: Path, uri: str) -> None:
        target = self._path(uri)
        self._ensure_dir(target.parent)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            shutil.copyfile(local_path, tmp)
            if self.durable:
                with tmp.open("rb+") as fh:
                    os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if self.durable:
            _fsync_dir(target.parent)

    def get_file(self, uri: str, local_path: Path) -> None:
        source = self._path(uri)
        if not source.is_file():
            raise BlobNotFoundError(uri)
        local_path.parent.mkdir(parents=True, exist_ok=True)
        if source.resolve() != local_path.resolve():
            shutil.copyfile(source, local_path)

    def list(self, prefix_uri: str) -> Iterator[str]:
        base = self._path(prefix_uri)
        if base.is_file():
            yield base.as_uri()
            return
        if not base.is_dir():
            return
        for path in sorted(p for p in base.rglob("*") if p.is_file()):
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                continue
            yield path.as_uri()

    def delete(self, uri: str) -> None:
        path = self._path(uri)
        if path.is_dir():
            shutil.rmtree(path)
            self._known_dirs = {d for d in self._known_dirs if not d.is_relative_to(path)}
        else:
            path.unlink(missing_ok=True)
