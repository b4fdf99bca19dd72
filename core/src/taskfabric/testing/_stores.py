"""`BlobStoreConformance`: the checks every blob store driver runs against itself."""

from __future__ import annotations

import hashlib
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar

import pytest

from taskfabric.storage import BlobNotFoundError, BlobStore, PackStore


def _pattern(size: int, seed: int) -> bytes:
    """`size` reproducible bytes of their own per seed."""
    return random.Random(seed).randbytes(size)


class BlobStoreConformance:
    """Subclass it in a test module, named `Test...`, and give the `blob_store` fixture:

    ```python
    class TestFooStoreConformance(BlobStoreConformance):
        large_file_bytes = 12 << 20  # above the driver's multipart part size

        @pytest.fixture
        def blob_store(self) -> Iterator[BlobStore]:
            yield FooBlobStore.from_root("foo://bucket/" + uuid.uuid4().hex, {})
    ```

    Each check gets a store rooted at a fresh, empty place. The checks are those the engine
    relies on: bytes, files and folders round-trip; a missing blob is `BlobNotFoundError`;
    `size` is the blob's length (or None: not known without reading);
    listing is recursive, sorted and stops at key boundaries; deletes are recursive; writes
    replace whole blobs, also when many threads write one key; `from_uri` reads what the store
    wrote (as `taskfabric-execute` does elsewhere); the packed documents of the engine work.
    """

    #: Size of the large file of the streaming check: make it span several upload parts.
    large_file_bytes: ClassVar[int] = 3 << 20
    #: Writers of the concurrent-writes check.
    concurrent_writers: ClassVar[int] = 8

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.taskfabric_conformance]

    @pytest.fixture
    def blob_store(self) -> BlobStore:
        """A store rooted at a fresh, empty place; override it (a plain or a yield fixture)."""
        raise NotImplementedError(f"give {type(self).__name__} a `blob_store` fixture")

    # -- bytes -----------------------------------------------------------------------------

    def test_bytes_round_trip_and_replace(self, blob_store: BlobStore) -> None:
        uri = blob_store.uri("docs", "a.pb")
        assert not blob_store.exists(uri)
        blob_store.put_bytes(uri, b"first")
        assert blob_store.exists(uri)
        assert blob_store.get_bytes(uri) == b"first"
        blob_store.put_bytes(uri, b"second, longer")
        assert blob_store.get_bytes(uri) == b"second, longer"
        blob_store.put_bytes(uri, b"")
        assert blob_store.get_bytes(uri) == b""

    def test_a_missing_blob_is_blob_not_found(self, blob_store: BlobStore) -> None:
        uri = blob_store.uri("nothing", "here")
        with pytest.raises(BlobNotFoundError) as caught:
            blob_store.get_bytes(uri)
        assert caught.value.uri == uri
        assert isinstance(caught.value, FileNotFoundError)

    def test_size_is_the_blobs_bytes_or_none(self, blob_store: BlobStore) -> None:
        """`size` (how the engine bounds what it reads of an attempt's outputs) is the
        blob's length, or None for a store that cannot tell without reading; a missing blob
        is `BlobNotFoundError`, as for a read."""
        uri = blob_store.uri("sized", "a.pb")
        blob_store.put_bytes(uri, b"x" * 1234)
        assert blob_store.size(uri) in (1234, None)
        with pytest.raises(BlobNotFoundError):
            blob_store.size(blob_store.uri("sized", "missing.pb"))

    def test_uris_are_under_the_root_and_ignore_extra_slashes(self, blob_store: BlobStore) -> None:
        assert blob_store.uri("a", "b") == blob_store.uri("/a/", "/b")
        assert blob_store.uri("a", "", "b") == blob_store.uri("a", "b")
        scheme = blob_store.uri("a").split("://", 1)[0]
        assert scheme == blob_store.scheme
        blob_store.put_bytes(blob_store.uri("a", "b"), b"x")
        assert list(blob_store.list(blob_store.uri("a"))) == [blob_store.uri("a", "b")]

    def test_names_with_spaces_and_unicode(self, blob_store: BlobStore) -> None:
        uri = blob_store.uri("odd names", "répertoire", "a file (1).txt")
        blob_store.put_bytes(uri, "é".encode())
        assert blob_store.get_bytes(uri) == "é".encode()
        assert list(blob_store.list(blob_store.uri("odd names"))) == [uri]

    # -- files and folders -----------------------------------------------------------------

    def test_files_round_trip(self, blob_store: BlobStore, tmp_path: Path) -> None:
        source = tmp_path / "in.bin"
        source.write_bytes(_pattern(100_000, 1))
        uri = blob_store.uri("files", "in.bin")
        blob_store.put_file(source, uri)
        target = tmp_path / "out" / "deep" / "copy.bin"
        blob_store.get_file(uri, target)
        assert target.read_bytes() == source.read_bytes()
        assert blob_store.get_bytes(uri) == source.read_bytes()

    def test_a_large_file_streams_whole(self, blob_store: BlobStore, tmp_path: Path) -> None:
        source = tmp_path / "large.bin"
        data = _pattern(self.large_file_bytes, 2)
        source.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        del data
        uri = blob_store.uri("large", "large.bin")
        blob_store.put_file(source, uri)
        target = tmp_path / "large-copy.bin"
        blob_store.get_file(uri, target)
        assert target.stat().st_size == self.large_file_bytes
        assert hashlib.sha256(target.read_bytes()).hexdigest() == digest

    def test_getting_a_missing_file_writes_nothing(
        self, blob_store: BlobStore, tmp_path: Path
    ) -> None:
        downloads = tmp_path / "downloads"
        downloads.mkdir()
        with pytest.raises(BlobNotFoundError):
            blob_store.get_file(blob_store.uri("missing.bin"), downloads / "never.bin")
        assert list(downloads.iterdir()) == []

    def test_folders_round_trip(self, blob_store: BlobStore, tmp_path: Path) -> None:
        source = tmp_path / "tree"
        files = {"a.txt": b"a", "sub/b.txt": b"bb", "sub/deeper/c.bin": _pattern(5000, 3)}
        for name, data in files.items():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            (source / name).write_bytes(data)
        uri = blob_store.uri("dirs", "tree")
        blob_store.put_dir(source, uri)
        assert blob_store.exists(uri)  # a folder of blobs exists
        target = tmp_path / "copy"
        blob_store.get_dir(uri, target)
        copied = {
            p.relative_to(target).as_posix(): p.read_bytes()
            for p in target.rglob("*")
            if p.is_file()
        }
        assert copied == files

    # -- listing and deleting --------------------------------------------------------------

    def test_list_is_recursive_sorted_and_stops_at_key_boundaries(
        self, blob_store: BlobStore
    ) -> None:
        names = ["p/b", "p/a/2", "p/a/1", "p/c/d/e", "pq/x", "p.txt"]
        for name in names:
            blob_store.put_bytes(blob_store.uri(name), name.encode())
        listed = list(blob_store.list(blob_store.uri("p")))
        assert listed == sorted(listed)
        assert listed == sorted(blob_store.uri(n) for n in ["p/a/1", "p/a/2", "p/b", "p/c/d/e"])
        # A blob's own URI lists itself; a missing prefix lists nothing.
        assert list(blob_store.list(blob_store.uri("p.txt"))) == [blob_store.uri("p.txt")]
        assert list(blob_store.list(blob_store.uri("nope"))) == []

    def test_delete_is_recursive_and_stops_at_key_boundaries(self, blob_store: BlobStore) -> None:
        for name in ["d/1", "d/e/2", "de/3", "d.txt"]:
            blob_store.put_bytes(blob_store.uri(name), b"x")
        blob_store.delete(blob_store.uri("d"))
        assert not blob_store.exists(blob_store.uri("d"))
        assert not blob_store.exists(blob_store.uri("d", "e", "2"))
        assert blob_store.exists(blob_store.uri("de", "3"))
        assert blob_store.exists(blob_store.uri("d.txt"))
        blob_store.delete(blob_store.uri("d.txt"))
        assert not blob_store.exists(blob_store.uri("d.txt"))
        blob_store.delete(blob_store.uri("never", "was"))  # absent: no error

    def test_many_objects_list_and_delete(self, blob_store: BlobStore) -> None:
        """More keys than one page of a listing (S3 pages by 1,000)."""
        count = 1100
        with ThreadPoolExecutor(8) as pool:
            for _ in pool.map(
                lambda i: blob_store.put_bytes(blob_store.uri("many", f"{i:05d}"), b""),
                range(count),
            ):
                pass
        listed = list(blob_store.list(blob_store.uri("many")))
        assert len(listed) == count
        assert listed == sorted(listed)
        blob_store.delete(blob_store.uri("many"))
        assert list(blob_store.list(blob_store.uri("many"))) == []

    # -- concurrency and other processes ---------------------------------------------------

    def test_concurrent_writers_leave_one_whole_blob(
        self, blob_store: BlobStore, tmp_path: Path
    ) -> None:
        uri = blob_store.uri("race", "blob")
        payloads = [_pattern(200_000 + i, 10 + i) for i in range(self.concurrent_writers)]
        files = []
        for i, data in enumerate(payloads):
            files.append(tmp_path / f"w{i}")
            files[-1].write_bytes(data)
        errors: list[BaseException] = []
        barrier = threading.Barrier(len(payloads))

        def write(index: int) -> None:
            try:
                barrier.wait()
                if index % 2:
                    blob_store.put_file(files[index], uri)
                else:
                    blob_store.put_bytes(uri, payloads[index])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=write, args=(i,)) for i in range(len(payloads))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert blob_store.get_bytes(uri) in payloads
        assert list(blob_store.list(blob_store.uri("race"))) == [uri]

    def test_from_uri_reads_what_the_store_wrote(self, blob_store: BlobStore) -> None:
        uri = blob_store.uri("shared", "doc")
        blob_store.put_bytes(uri, b"seen elsewhere")
        other = type(blob_store).from_uri(uri)
        assert other.get_bytes(uri) == b"seen elsewhere"
        assert other.exists(uri)

    def test_the_engine_documents_round_trip(self, blob_store: BlobStore) -> None:
        """PackStore (the engine's inputs and outputs documents) on this store."""
        literals = PackStore(blob_store)
        try:
            prefix = blob_store.uri("executions", "e1", "nodes", "n0")
            small = literals.put(prefix, "inputs.pb", b"in")
            large = literals.put(prefix, "outputs.pb", os.urandom(2 << 20))
            assert literals.get(small) == b"in"
            assert len(literals.get(large)) == 2 << 20
        finally:
            literals.close()


__all__ = ["BlobStoreConformance"]
