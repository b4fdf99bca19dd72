"""The blob store interface."""

from __future__ import annotations

import abc
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class BlobNotFoundError(FileNotFoundError):
    """The blob at a URI does not exist."""

    def __init__(self, uri: str) -> None:
        super().__init__(f"no blob at {uri}")
        self.uri = uri


class BlobStore(abc.ABC):
    """Stores opaque bytes, files and directories under URIs.

    Every write is atomic: a reader sees the whole blob or no blob, never a partial one,
    even if the writer is killed mid-write.
    """

    #: URI scheme this store answers for, e.g. "file" or "s3".
    scheme: str

    @classmethod
    def from_uri(cls, uri: str) -> BlobStore:
        """A store able to read and write `uri` (used by `taskfabric-execute`, in processes
        that have no config file: settings come from the environment)."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URI")

    @classmethod
    def from_root(cls, root_uri: str, options: Mapping[str, Any]) -> BlobStore:
        """The store of an engine whose `[storage] blob_root` (or `data_root`) is `root_uri`:
        `uri(...)` names keys under it. `options` is `[storage] options`, the driver's own
        settings (plus `durable` from `[storage]`): raise ValueError naming a bad key and the
        fix."""
        raise NotImplementedError(
            f"{cls.__name__} cannot be a data root: it implements no from_root()"
        )

    @abc.abstractmethod
    def uri(self, *parts: str) -> str:
        """The URI of a key made of `parts` joined by "/" under the store's root."""

    @abc.abstractmethod
    def put_bytes(self, uri: str, data: bytes) -> None:
        """Write `data` at `uri` atomically, replacing any blob there."""

    @abc.abstractmethod
    def get_bytes(self, uri: str) -> bytes:
        """Read the blob at `uri`; raises BlobNotFoundError if there is none."""

    @abc.abstractmethod
    def exists(self, uri: str) -> bool:
        """Whether a blob (or a directory of blobs) exists at `uri`."""

    @abc.abstractmethod
    def put_file(self, local_path: Path, uri: str) -> None:
        """Upload one local file to `uri` atomically."""

    @abc.abstractmethod
    def get_file(self, uri: str, local_path: Path) -> None:
        """Download the blob at `uri` to `local_path`."""

    @abc.abstractmethod
    def list(self, prefix_uri: str) -> Iterator[str]:
        """URIs of every blob under `prefix_uri`, recursively, in sorted order."""

    @abc.abstractmethod
    def delete(self, uri: str) -> None:
        """Delete the blob at `uri`, or every blob under it; no error if absent."""

    def local_path(self, uri: str) -> Path | None:
        """A local path at which the blob can be read directly, if the store has one."""
        return None

    def size(self, uri: str) -> int | None:
        """The bytes of the blob at `uri` without reading it, or None when the store cannot
        tell cheaply (then a reader that bounds its memory reads and measures). Raises
        BlobNotFoundError if there is none. Drivers with a cheap stat (an object store's
        HEAD) should override it."""
        path = self.local_path(uri)
        if path is None:
            return None
        try:
            return path.stat().st_size
        except FileNotFoundError:
            raise BlobNotFoundError(uri) from None

    def check(self) -> str:
        """Whether the store can be used, for `taskfabric plugins check`: write a small probe
        blob under the root, read it back and delete it. Returns what was checked; raises an
        error that says what is wrong and what to do (a missing bucket, refused credentials).
        Drivers may override it to say more (see taskfabric-aws's `s3`)."""
        probe = self.uri(".taskfabric-check", uuid.uuid4().hex)
        data = b"written by taskfabric plugins check\n"
        self.put_bytes(probe, data)
        try:
            if self.get_bytes(probe) != data:
                raise OSError(f"the probe blob {probe} does not read back as it was written")
        finally:
            self.delete(probe)
        return f"{self.uri()} is writable (a probe blob written, read back and deleted)"

    def put_dir(self, local_dir: Path, uri: str) -> None:
        """Upload every file under `local_dir` to the prefix `uri`."""
        for path in sorted(p for p in local_dir.rglob("*") if p.is_file()):
            self.put_file(path, uri.rstrip("/") + "/" + path.relative_to(local_dir).as_posix())

    def get_dir(self, uri: str, local_dir: Path) -> None:
        """Download every blob under the prefix `uri` into `local_dir`."""
        prefix = uri.rstrip("/") + "/"
        for blob_uri in self.list(uri):
            target = local_dir / blob_uri[len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            self.get_file(blob_uri, target)
