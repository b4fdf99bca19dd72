"""Small protobuf documents packed into append-only segment files.

The engine writes two small documents per node (inputs and outputs). On many file systems
creating a file costs far more than writing one (hundreds of microseconds here, against
about one microsecond to append to an open file), so the local store packs them: each
engine process appends records to one segment file per execution and hands out URIs of the
form `file:///…/packs/<segment>.pack#<offset>+<length>`.

A record is `u32 length | u32 crc32 | payload` (little endian). The URI of a record is only
recorded in the metadata database after its append has returned, so a reader never sees a
partial record; a crash can only leave a torn record at the end of a segment, which no URI
refers to, and a resumed execution appends to a new segment.

A put may be deferred (`put(..., defer=True)`): its record gets its offset at once but is
appended with the next `flush` (or a read of it), so that the engine's loop writes a turn's
documents (a map's items' inputs) in one `write(2)` instead of one each. The engine flushes
before it commits anything that names them. Deferred records go to a segment of their own
(same form of name), with a lock of its own: the loop never waits for a worker thread's
append of an attempt's outputs.

Documents larger than `max_packed` bytes, and every document on stores without local files
(S3), are written as ordinary blobs instead.
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


#: deferred bytes of a segment that are written at once, without waiting for a flush
_DEFER_AT_MOST = 1 << 20

#: bytes read past a record for a `ReadAhead` (a page: about a hundred small documents)
READ_AHEAD = 4096


class ReadAhead:
    """What one reader read of a segment past the record it asked for (`PackStore.get`'s
    `ahead`), for the records it asks for next: the cache hits of a chain read their
    outputs one after another from the segment of the execution that computed them, one
    `pread(2)` for about a hundred instead of one each. A record's bytes never change once
    its URI is known (segments are append-only: no URI names a byte not yet written), and
    each record read from here is checked (length, checksum) as one read from the file.
    One reader's: not shared between threads."""

    __slots__ = ("base", "data", "start")

    def __init__(self) -> None:
        self.base = ""
        self.start = 0
        self.data = b""


class _Segment:
    def __init__(self, path: Path, uri: str) -> None:
        _make_folder(path.parent)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        #: the segment's size, its deferred records included
        self.size = os.fstat(self.fd).st_size
        self.uri = uri
        #: records put with `defer`, not written yet (they end the segment)
        self.pending = bytearray()

    def write(self, data: bytes | bytearray) -> None:
        """Append `data` (call with the store's write lock held)."""
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]


def _make_folder(folder: Path) -> None:
    """`folder.mkdir(parents=True, exist_ok=True)` for a segment's `packs` folder, whose
    parent (an execution's folder) is new when an execution starts: two `mkdir(2)` calls
    where pathlib's makes three (the first fails, its parent missing)."""
    for each in (folder.parent, folder):
        try:
            os.mkdir(each)
        except FileExistsError:
            pass
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)
            return


class PackStore:
    """Puts and gets small documents; thread-safe."""

    def __init__(
        self, store: BlobStore, *, max_packed: int = 1 << 20, open_readers: int = 16
    ) -> None:
        self.store = store
        self.max_packed = max_packed
        self._local = store.local_path(store.uri("probe")) is not None
        # by (prefix, deferred): a process's segment of an execution, and the one of its
        # deferred records (each with its own lock)
        self._segments: dict[tuple[str, bool], _Segment] = {}
        # segments with deferred records not written yet, by their URI
        self._deferred: dict[str, _Segment] = {}
        self._write_lock = threading.Lock()
        self._defer_lock = threading.Lock()
        self._readers: OrderedDict[str, int] = OrderedDict()
        self._read_lock = threading.Lock()
        self._max_readers = open_readers
        self._tag = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        self._defer_tag = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"

    def put(self, prefix_uri: str, name: str, data: bytes, *, defer: bool = False) -> str:
        """Store `data` under `prefix_uri` and return its URI. With `defer`, a packed record
        is written by the next `flush` (or the next put without `defer`, or a read of it):
        its URI must not be recorded anywhere before then."""
        if not self._local or len(data) > self.max_packed:
            uri = f"{prefix_uri}/{name}"
            self.store.put_bytes(uri, data)
            return uri
        record = _HEADER.pack(len(data), zlib.crc32(data)) + data
        with self._defer_lock if defer else self._write_lock:
            seg = self._segments.get((prefix_uri, defer))
            if seg is None:
                uri = f"{prefix_uri}/packs/{self._defer_tag if defer else self._tag}.pack"
                path = self.store.local_path(uri)
                assert path is not None
                seg = self._segments[(prefix_uri, defer)] = _Segment(path, uri)
            offset = seg.size
            seg.size += len(record)
            if not defer:
                seg.write(record)
            elif len(seg.pending) + len(record) <= _DEFER_AT_MOST:
                seg.pending += record
                self._deferred[seg.uri] = seg
            else:
                seg.pending += record
                self._write_pending(seg)
        return f"{seg.uri}#{offset}+{len(data)}"

    def flush(self) -> None:
        """Write every deferred record."""
        if not self._deferred:
            return
        with self._defer_lock:
            for seg in list(self._deferred.values()):
                self._write_pending(seg)

    def _write_pending(self, seg: _Segment) -> None:
        """Write the segment's deferred records (call with `_defer_lock` held)."""
        self._deferred.pop(seg.uri, None)
        pending, seg.pending = seg.pending, bytearray()
        try:
            seg.write(pending)
        except BaseException:
            # what was not written can no longer be at its offset: nothing names it yet
            # (it was deferred), and the next record goes after what the file holds
            seg.size = os.fstat(seg.fd).st_size
            raise

    def get(self, uri: str, ahead: ReadAhead | None = None) -> bytes:
        """The document at `uri` (packed or a plain blob). With `ahead`, a packed record is
        taken from the bytes it holds when they cover it, else read with `READ_AHEAD` bytes
        more, which `ahead` then holds."""
        base, sep, frag = uri.partition("#")
        if not sep:
            return self.store.get_bytes(uri)
        try:
            offset_text, length_text = frag.split("+")
            offset, length = int(offset_text), int(length_text)
        except ValueError:
            raise BlobNotFoundError(uri) from None
        size = _HEADER.size + length
        if (
            ahead is not None
            and ahead.base == base
            and 0 <= offset - ahead.start <= len(ahead.data) - size
        ):
            start = offset - ahead.start
            raw = ahead.data[start : start + size]
        else:
            if base in self._deferred:
                with self._defer_lock:
                    seg = self._deferred.get(base)
                    if seg is not None:
                        self._write_pending(seg)
            with self._read_lock:  # the LRU may close a descriptor: read while holding it
                raw = os.pread(
                    self._reader(base), size if ahead is None else size + READ_AHEAD, offset
                )
            if ahead is not None:
                ahead.base, ahead.start, ahead.data = base, offset, raw
                raw = raw[:size]
        if len(raw) != size:
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
        """Stop appending under `prefix_uri` (its execution ended); deferred records are
        written first."""
        with self._defer_lock:
            seg = self._segments.pop((prefix_uri, True), None)
            if seg is not None:
                try:
                    if seg.pending:
                        self._write_pending(seg)
                finally:
                    os.close(seg.fd)
        with self._write_lock:
            seg = self._segments.pop((prefix_uri, False), None)
            if seg is not None:
                os.close(seg.fd)

    def close(self) -> None:
        with self._defer_lock, self._write_lock:
            try:
                for seg in list(self._deferred.values()):
                    self._write_pending(seg)
            finally:
                for seg in self._segments.values():
                    os.close(seg.fd)
                self._segments.clear()
                self._deferred.clear()
        with self._read_lock:
            for fd in self._readers.values():
                os.close(fd)
            self._readers.clear()
