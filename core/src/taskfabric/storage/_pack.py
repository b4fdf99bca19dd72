"""Small protobuf documents packed into append-only segment files.

The engine writes two small documents per node (inputs and outputs). On many file systems
creating a file costs far more than writing one (hundreds of microseconds here, against
about one microsecond to append to an open file), so the local store packs them: each
engine process appends records to one segment file per execution and hands out URIs of the
form `file:///…/packs/<segment>.pack#<offset>+<length>`.

A record is `u32 length | u32 crc32 | payload` (little endian). The URI of a record is only
recorded in the metadata database after its append has returned, so a reader never sees a
partial record; a crash can only leave a torn record at the end of a segment, which no URI
refers to, and a resumed execution appends to a new segment. Documents larger than
`max_packed` bytes, and every document on stores without local files (S3), are written as
ordinary blobs instead.
"""

from __future__ import annotations

import os
import secrets
import socket
import struct
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

from taskfabric.storage._base import BlobNotFoundError, BlobStore

_HEADER = struct.Struct("<II")


class CorruptRecordError(IOError):
    """A packed record failed its length or checksum test."""


class _Segment:
    def __init__(self, path: Path, uri: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.uri = uri


class PackStore:
    """Puts and gets small documents; thread-safe."""

    def __init__(
        self, store: BlobStore, *, max_packed: int = 1 << 20, open_readers: int = 16
    ) -> None:
        self.store = store
        self.max_packed = max_packed
        self._local = store.local_path(store.uri("probe")) is not None
        self._segments: dict[str, _Segment] = {}
        self._write_lock = threading.Lock()
        self._readers: OrderedDict[str, int] = OrderedDict()
        self._read_lock = threading.Lock()
        self._max_readers = open_readers
        self._tag = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def put(self, prefix_uri: str, name: str, data: bytes) -> str:
        """Store `data` under `prefix_uri` and return its URI."""
        if not self._local or len(data) > self.max_packed:
            uri = f"{prefix_uri}/{name}"
            self.store.put_bytes(uri, data)
            return uri
        record = _HEADER.pack(len(data), zlib.crc32(data)) + data
        with self._write_lock:
            seg = self._segments.get(prefix_uri)
            if seg is None:
                uri = f"{prefix_uri}/packs/{self._tag}.pack"
                path = self.store.local_path(uri)
                assert path is not None
                seg = _Segment(path, uri)
                self._segments[prefix_uri] = seg
            offset = seg.size
            view = memoryview(record)
            while view:
                view = view[os.write(seg.fd, view) :]
            seg.size += len(record)
        return f"{seg.uri}#{offset}+{len(data)}"

    def get(self, uri: str) -> bytes:
        """The document at `uri` (packed or a plain blob)."""
        base, sep, frag = uri.partition("#")
        if not sep:
            return self.store.get_bytes(uri)
        try:
            offset_text, length_text = frag.split("+")
            offset, length = int(offset_text), int(length_text)
        except ValueError:
            raise BlobNotFoundError(uri) from None
        with self._read_lock:  # the LRU may close a descriptor: read while holding it
            raw = os.pread(self._reader(base), _HEADER.size + length, offset)
        if len(raw) != _HEADER.size + length:
            raise CorruptRecordError(f"{uri}: record is truncated")
        size, crc = _HEADER.unpack_from(raw)
        payload = raw[_HEADER.size :]
        if size != length or zlib.crc32(payload) != crc:
            raise CorruptRecordError(f"{uri}: record fails its checksum")
        return payload

    def size(self, uri: str) -> int | None:
        """The bytes of the document at `uri` without reading it (None: the store cannot
        tell cheaply)."""
        _, sep, frag = uri.partition("#")
        if not sep:
            return self.store.size(uri)
        try:
            return int(frag.split("+")[1])
        except (IndexError, ValueError):
            raise BlobNotFoundError(uri) from None

    def _reader(self, base_uri: str) -> int:
        """An open descriptor of a segment; call with `_read_lock` held."""
        fd = self._readers.get(base_uri)
        if fd is not None:
            self._readers.move_to_end(base_uri)
            return fd
        path = self.store.local_path(base_uri)
        if path is None:
            raise BlobNotFoundError(base_uri)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise BlobNotFoundError(base_uri) from None
        self._readers[base_uri] = fd
        if len(self._readers) > self._max_readers:
            _, old = self._readers.popitem(last=False)
            os.close(old)
        return fd

    def close_segment(self, prefix_uri: str) -> None:
        """Stop appending under `prefix_uri` (its execution ended)."""
        with self._write_lock:
            seg = self._segments.pop(prefix_uri, None)
            if seg is not None:
                os.close(seg.fd)

    def close(self) -> None:
        with self._write_lock:
            for seg in self._segments.values():
                os.close(seg.fd)
            self._segments.clear()
        with self._read_lock:
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
