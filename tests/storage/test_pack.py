"""Packed small documents: append-only, checksummed, never half-read."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from taskfabric.storage import (
    BlobNotFoundError,
    CorruptRecordError,
    LocalBlobStore,
    PackStore,
    ReadAhead,
)
from taskfabric.storage._pack import READ_AHEAD


def test_put_get_many(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    prefix = store.uri("executions", "e1")
    uris = [packs.put(prefix, f"nodes/n{i}/outputs.pb", f"doc {i}".encode()) for i in range(100)]
    assert len({u.split("#")[0] for u in uris}) == 1  # one segment file
    assert [packs.get(u) for u in uris] == [f"doc {i}".encode() for i in range(100)]
    # a fresh reader (another process) reads them too
    assert PackStore(store).get(uris[42]) == b"doc 42"


def test_large_documents_become_plain_blobs(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store, max_packed=10)
    uri = packs.put(store.uri("e"), "big.pb", b"x" * 11)
    assert "#" not in uri and store.get_bytes(uri) == b"x" * 11
    assert packs.get(uri) == b"x" * 11


def test_concurrent_writers(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    prefix = store.uri("e")
    results: dict[int, str] = {}

    def write(k: int) -> None:
        for i in range(200):
            results[k * 1000 + i] = packs.put(prefix, "x", f"{k}:{i}".encode() * 3)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key, uri in results.items():
        assert packs.get(uri) == f"{key // 1000}:{key % 1000}".encode() * 3


def test_corruption_and_truncation_are_detected(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    uri = packs.put(store.uri("e"), "x", b"hello world")
    packs.close()
    path = Path(store.local_path(uri.split("#")[0]) or "")
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptRecordError, match="checksum"):
        PackStore(store).get(uri)
    os.truncate(path, len(data) - 3)
    with pytest.raises(CorruptRecordError, match="truncated"):
        PackStore(store).get(uri)
    with pytest.raises(BlobNotFoundError):
        PackStore(store).get(store.uri("nope.pack") + "#0+3")


def _segment_bytes(store: LocalBlobStore, uri: str) -> bytes:
    return Path(store.local_path(uri.partition("#")[0]) or "").read_bytes()


def test_deferred_puts_are_written_by_flush_in_order(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    prefix = store.uri("e")
    deferred = [packs.put(prefix, f"d{i}", f"deferred {i}".encode(), defer=True) for i in range(3)]
    # their offsets follow one another; nothing is written before the flush
    sizes = [8 + len(f"deferred {i}") for i in range(3)]
    assert [int(u.split("#")[1].split("+")[0]) for u in deferred] == [0, sizes[0], sum(sizes[:2])]
    assert not Path(store.local_path(deferred[0].partition("#")[0]) or "").stat().st_size
    packs.flush()
    other = PackStore(store)  # another process: reads only what is on disk
    assert [other.get(u) for u in deferred] == [f"deferred {i}".encode() for i in range(3)]
    packs.flush()  # nothing left: a no-op
    assert len(_segment_bytes(store, deferred[0])) == sum(sizes)


def test_deferred_records_have_a_segment_of_their_own(tmp_path: Path) -> None:
    """A worker thread's put (an attempt's outputs) is written at once, beside the loop's
    deferred ones, which it neither waits for nor writes."""
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    prefix = store.uri("e")
    deferred = packs.put(prefix, "d", b"deferred", defer=True)
    now = packs.put(prefix, "n", b"now")
    assert deferred.partition("#")[0] != now.partition("#")[0]
    other = PackStore(store)
    assert other.get(now) == b"now"
    with pytest.raises(CorruptRecordError):
        other.get(deferred)  # not written yet
    packs.flush()
    assert other.get(deferred) == b"deferred"


def test_reading_or_closing_writes_deferred_records(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    read = packs.put(store.uri("e1"), "x", b"read back", defer=True)
    assert packs.get(read) == b"read back"  # the store's own read writes it first
    assert PackStore(store).get(read) == b"read back"
    closed = packs.put(store.uri("e2"), "x", b"closed", defer=True)
    packs.close_segment(store.uri("e2"))
    assert PackStore(store).get(closed) == b"closed"
    last = packs.put(store.uri("e3"), "x", b"at close", defer=True)
    packs.close()
    assert PackStore(store).get(last) == b"at close"


def test_deferred_bytes_are_bounded(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    chunk = b"x" * (256 * 1024)
    uris = [packs.put(store.uri("e"), f"d{i}", chunk, defer=True) for i in range(7)]
    # over 1 MiB waiting: written without a flush, the ones that fit still deferred
    on_disk = len(_segment_bytes(store, uris[0]))
    assert on_disk == 4 * (8 + len(chunk))  # the fourth did not fit: written with it
    packs.flush()
    assert all(PackStore(store).get(u) == chunk for u in uris)


def _counting_preads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the `pread(2)` calls made from now on."""
    sizes: list[int] = []
    pread = os.pread

    def counted(fd: int, size: int, offset: int) -> bytes:
        sizes.append(size)
        return pread(fd, size, offset)

    monkeypatch.setattr(os, "pread", counted)
    return sizes


def test_a_read_ahead_serves_the_records_after_the_one_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`get(uri, ahead)` reads `READ_AHEAD` bytes past the record and takes the next
    records from them (a chain's cache hits: one read for many); a record past what was
    read then, or in another segment, is read afresh; each is checked as one read alone."""
    store = LocalBlobStore(tmp_path)
    packs = PackStore(store)
    first = [packs.put(store.uri("e1"), f"n{i}", f"doc {i}".encode()) for i in range(50)]
    other = packs.put(store.uri("e2"), "n0", b"elsewhere")
    sizes = _counting_preads(monkeypatch)
    ahead = ReadAhead()
    assert [packs.get(u, ahead) for u in first] == [f"doc {i}".encode() for i in range(50)]
    assert len(sizes) == 1 and sizes[0] > READ_AHEAD
    later = packs.put(store.uri("e1"), "n50", b"written after the read")
    assert packs.get(later, ahead) == b"written after the read"
    assert packs.get(other, ahead) == b"elsewhere"
    assert packs.get(first[3], ahead) == b"doc 3"
    assert len(sizes) == 4
    assert [packs.get(u) for u in first[:3]] == [b"doc 0", b"doc 1", b"doc 2"]
    assert len(sizes) == 7  # (without `ahead`: one read a record)
    # a record's bytes are checked whether read alone or ahead
    path = Path(store.local_path(first[0].partition("#")[0]) or "")
    data = bytearray(path.read_bytes())
    data[data.index(b"doc 7") + 4] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = ReadAhead()
    assert packs.get(first[6], fresh) == b"doc 6"
    with pytest.raises(CorruptRecordError, match="checksum"):
        packs.get(first[7], fresh)
    assert packs.get(first[8], fresh) == b"doc 8"


def test_a_new_executions_packs_folder_is_made_with_its_parents(tmp_path: Path) -> None:
    """A segment's folder is made when missing, its parents too (a store whose root has no
    `executions` folder yet), and an existing one is used as it is."""
    store = LocalBlobStore(tmp_path / "root")
    packs = PackStore(store)
    uri = packs.put(store.uri("executions", "e1"), "x", b"one")
    assert (tmp_path / "root" / "executions" / "e1" / "packs").is_dir()
    again = PackStore(store).put(store.uri("executions", "e1"), "y", b"two")
    assert packs.get(uri) == b"one" and packs.get(again) == b"two"
