"""Packed small documents: append-only, checksummed, never half-read."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from taskfabric.storage import BlobNotFoundError, CorruptRecordError, LocalBlobStore, PackStore


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
