"""File, Directory and pathlib.Path: upload, content hashes, lazy reads, read-only blobs."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Annotated

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.storage import LocalBlobStore
from taskfabric.types import (
    Directory,
    File,
    Format,
    LiteralConversionError,
    TransformContext,
    TypeEngine,
    type_str,
)

SHA256_OF_HELLO = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"


class CountingStore(LocalBlobStore):
    """A local store that counts uploads."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.uploads = 0

    def put_file(self, local_path: Path, uri: str) -> None:
        self.uploads += 1
        super().put_file(local_path, uri)


class RemoteLikeStore(CountingStore):
    """A store without local paths, like S3: reads must download."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.downloads = 0

    def local_path(self, uri: str) -> Path | None:
        return None

    def get_file(self, uri: str, local_path: Path) -> None:
        self.downloads += 1
        super().get_file(uri, local_path)


def make_ctx(store: LocalBlobStore, root: Path, node: str = "node-a") -> TransformContext:
    return TransformContext(
        store=store, raw_prefix=store.uri("raw", "exec", node), work_dir=root / "work" / node
    )


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_file_upload_hash_size_and_uri(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    source = write(tmp_path / "in" / "hello.txt", b"hello")
    literal = engine.to_literal(File(source), File, ctx)
    blob = literal.blob
    assert blob.content_hash == SHA256_OF_HELLO
    assert blob.size_bytes == 5
    assert blob.type.dimensionality == pb.BLOB_DIMENSIONALITY_SINGLE
    assert blob.uri == f"{ctx.raw_prefix}/{SHA256_OF_HELLO[7:39]}/hello.txt"
    stored = ctx.store.local_path(blob.uri)
    assert stored is not None and stored.read_bytes() == b"hello"
    assert stat.S_IMODE(stored.stat().st_mode) == 0o444
    assert stat.S_IMODE(source.stat().st_mode) != 0o444  # the user's file is left alone


def test_file_read_back_is_lazy_and_reads_the_stored_file(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    literal = engine.to_literal(write(tmp_path / "a.csv", b"x,y\n1,2\n"), File, ctx)
    value = engine.to_python(literal, File, ctx)
    assert isinstance(value, File)
    assert value.uri == literal.blob.uri and value.content_hash == literal.blob.content_hash
    assert value.name == "a.csv" and value.size_bytes == 8
    assert value.path == ctx.store.local_path(literal.blob.uri)  # local store: no copy
    assert not ctx.work_dir.exists()
    with value.open() as fh:
        assert fh.read() == "x,y\n1,2\n"
    assert os.fspath(value) == str(value.path)


def test_stored_file_refuses_writes(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    value = engine.to_python(engine.to_literal(write(tmp_path / "a", b"1"), File, ctx), File, ctx)
    for mode in ("w", "a", "r+", "wb"):
        with pytest.raises(PermissionError, match="cannot be modified"):
            value.open(mode)
    assert value.read_bytes() == b"1"


def test_remote_store_downloads_once_on_first_use(tmp_path: Path) -> None:
    engine = TypeEngine.with_builtins()
    store = RemoteLikeStore(tmp_path / "store")
    ctx = make_ctx(store, tmp_path)
    literal = engine.to_literal(write(tmp_path / "data.bin", b"\x00\x01"), File, ctx)
    value = engine.to_python(literal, File, ctx)
    assert store.downloads == 0
    assert value.read_bytes() == b"\x00\x01"
    assert value.path.is_relative_to(ctx.work_dir)
    assert stat.S_IMODE(value.path.stat().st_mode) == 0o444
    again = engine.to_python(literal, File, ctx)
    assert again.read_bytes() == b"\x00\x01"
    assert store.downloads == 1  # the second value reuses the download


def test_received_file_passes_through_without_upload_or_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = TypeEngine.with_builtins()
    store = CountingStore(tmp_path / "store")
    ctx_a = make_ctx(store, tmp_path, "a")
    literal = engine.to_literal(write(tmp_path / "f.txt", b"data"), File, ctx_a)
    assert store.uploads == 1
    received = engine.to_python(literal, File, make_ctx(store, tmp_path, "b"))

    def no_hashing(path: Path) -> tuple[str, int]:
        raise AssertionError("a stored file must not be hashed again")

    monkeypatch.setattr("taskfabric.types._blob_transformers.hash_file", no_hashing)
    again = engine.to_literal(received, File, make_ctx(store, tmp_path, "b"))
    assert again.blob == literal.blob
    assert store.uploads == 1


def test_same_content_is_uploaded_once_per_prefix(tmp_path: Path) -> None:
    engine = TypeEngine.with_builtins()
    store = CountingStore(tmp_path / "store")
    ctx = make_ctx(store, tmp_path)
    first = engine.to_literal(write(tmp_path / "x" / "f.txt", b"same"), File, ctx)
    second = engine.to_literal(write(tmp_path / "y" / "f.txt", b"same"), File, ctx)
    assert first.blob.uri == second.blob.uri and store.uploads == 1


def test_file_new_gives_a_fresh_scratch_path(engine: TypeEngine, ctx: TransformContext) -> None:
    first, second = File.new("out.csv"), File.new("out.csv")
    assert first.path != second.path and first.path.name == "out.csv"
    assert not first.path.exists() and first.path.parent.is_dir()
    first.path.write_text("a\n")
    literal = engine.to_literal(first, File, ctx)
    assert literal.blob.size_bytes == 2


def test_format_spellings_and_literal_types(engine: TypeEngine) -> None:
    assert File["csv"] == Annotated[File, Format("csv")]
    assert type_str(engine.literal_type(File["csv"])) == "File[csv]"
    assert type_str(engine.literal_type(File)) == "File"
    assert type_str(engine.literal_type(Directory["images"])) == "Directory[images]"
    assert type_str(engine.literal_type(Path)) == "File"
    assert engine.literal_type(Annotated[File, Format("csv")]).blob.format == "csv"


def test_format_is_recorded_and_checked_on_pass_through(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    literal = engine.to_literal(write(tmp_path / "t.csv", b"a"), File["csv"], ctx)
    assert literal.blob.type.format == "csv"
    received = engine.to_python(literal, File["csv"], ctx)
    assert engine.to_literal(received, File, ctx).blob.type.format == "csv"
    with pytest.raises(LiteralConversionError, match="format 'csv'"):
        engine.to_literal(received, File["parquet"], ctx)


def test_file_accepts_paths_and_strings(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    path = write(tmp_path / "p.txt", b"hello")
    assert engine.to_literal(path, File, ctx).blob.content_hash == SHA256_OF_HELLO
    assert engine.to_literal(str(path), File, ctx).blob.content_hash == SHA256_OF_HELLO


@pytest.mark.parametrize("py_type", [File, Path])
def test_missing_file_and_folder_are_rejected(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path, py_type: object
) -> None:
    with pytest.raises(LiteralConversionError, match="does not exist"):
        engine.to_literal(tmp_path / "nope.txt", py_type, ctx)
    with pytest.raises(LiteralConversionError, match="not a file"):
        engine.to_literal(tmp_path, py_type, ctx)
    with pytest.raises(LiteralConversionError, match="int"):
        engine.to_literal(3, py_type, ctx)


def test_blob_conversion_without_context_says_what_is_missing(
    engine: TypeEngine, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="TransformContext"):
        engine.to_literal(write(tmp_path / "f", b""), File)


def test_awkward_file_names_survive(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    literal = engine.to_literal(write(tmp_path / "my data #1 100%.txt", b"ok"), File, ctx)
    value = engine.to_python(literal, File, ctx)
    assert value.name == "my data #1 100%.txt"
    assert value.read_bytes() == b"ok"


def test_pathlib_path_reads_back_as_local_path(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    literal = engine.to_literal(write(tmp_path / "model.bin", b"weights"), Path, ctx)
    value = engine.to_python(literal, Path, ctx)
    assert isinstance(value, Path) and value.read_bytes() == b"weights"
    assert value == ctx.store.local_path(literal.blob.uri)


@settings(max_examples=25, deadline=None)
@given(
    data=st.binary(max_size=2000),
    name=st.text(st.characters(categories=["L", "N"]), min_size=1, max_size=12),
)
def test_file_round_trip_property(data: bytes, name: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine = TypeEngine.with_builtins()
        ctx = make_ctx(LocalBlobStore(root / "store"), root)
        source = write(root / "in" / name, data)
        literal = engine.to_literal(File(source), File, ctx)
        assert literal.blob.size_bytes == len(data)
        value = engine.to_python(literal, File, ctx)
        assert value.read_bytes() == data and value.name == name


# -- directories ------------------------------------------------------------------------------


def make_tree(root: Path, files: dict[str, bytes]) -> Path:
    for relative, data in files.items():
        write(root / relative, data)
    root.mkdir(parents=True, exist_ok=True)
    return root


TREE = {"a.txt": b"A", "sub/b.txt": b"BB", "sub/deeper/c.bin": b"\x00" * 10}


def test_directory_round_trip(engine: TypeEngine, ctx: TransformContext, tmp_path: Path) -> None:
    source = make_tree(tmp_path / "images", TREE)
    literal = engine.to_literal(Directory(source), Directory, ctx)
    assert literal.blob.type.dimensionality == pb.BLOB_DIMENSIONALITY_MULTIPART
    assert literal.blob.size_bytes == 13
    assert literal.blob.uri.endswith("/images")
    value = engine.to_python(literal, Directory, ctx)
    relative = [p.relative_to(value.path).as_posix() for p in value]
    assert relative == ["a.txt", "sub/b.txt", "sub/deeper/c.bin"]
    assert (value.path / "sub" / "b.txt").read_bytes() == b"BB"
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o444 for p in value.files())


def test_directory_hash_depends_on_content_not_location(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    one = engine.to_literal(make_tree(tmp_path / "x" / "d", TREE), Directory, ctx)
    two = engine.to_literal(make_tree(tmp_path / "y" / "d", TREE), Directory, ctx)
    changed = engine.to_literal(
        make_tree(tmp_path / "z" / "d", {**TREE, "a.txt": b"changed"}), Directory, ctx
    )
    renamed = engine.to_literal(
        make_tree(
            tmp_path / "w" / "d",
            {"A.txt": b"A", "sub/b.txt": b"BB", "sub/deeper/c.bin": b"\x00" * 10},
        ),
        Directory,
        ctx,
    )
    assert one.blob.content_hash == two.blob.content_hash
    assert one.blob.content_hash != changed.blob.content_hash
    assert one.blob.content_hash != renamed.blob.content_hash


def test_directory_from_remote_store_is_downloaded(tmp_path: Path) -> None:
    engine = TypeEngine.with_builtins()
    store = RemoteLikeStore(tmp_path / "store")
    ctx = make_ctx(store, tmp_path)
    literal = engine.to_literal(make_tree(tmp_path / "src", TREE), Directory, ctx)
    value = engine.to_python(literal, Directory, ctx)
    assert store.downloads == 0
    assert [p.read_bytes() for p in value] == [b"A", b"BB", b"\x00" * 10]
    assert value.path.is_relative_to(ctx.work_dir)


def test_empty_directory_round_trip(engine: TypeEngine, ctx: TransformContext) -> None:
    empty = Directory.new("nothing")
    literal = engine.to_literal(empty, Directory, ctx)
    value = engine.to_python(literal, Directory, ctx)
    assert value.files() == [] and value.path.is_dir()


def test_directory_rejects_a_file_and_files_reject_directories(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    with pytest.raises(LiteralConversionError, match="not a directory"):
        engine.to_literal(write(tmp_path / "f", b""), Directory, ctx)
    stored_dir = engine.to_python(
        engine.to_literal(make_tree(tmp_path / "d", TREE), Directory, ctx), Directory, ctx
    )
    with pytest.raises(LiteralConversionError):
        engine.to_literal(stored_dir, File, ctx)


def test_files_inside_records_and_lists(
    engine: TypeEngine, ctx: TransformContext, tmp_path: Path
) -> None:
    from dataclasses import dataclass

    @dataclass
    class Report:
        title: str
        attachments: list[File]
        folder: Directory | None = None

    report = Report(
        "r", [File(write(tmp_path / "1.txt", b"1")), File(write(tmp_path / "2.txt", b"2"))]
    )
    back = engine.to_python(engine.to_literal(report, Report, ctx), Report, ctx)
    assert [f.read_bytes() for f in back.attachments] == [b"1", b"2"]
    assert back.folder is None


def test_guessed_types_for_blobs(engine: TypeEngine) -> None:
    assert engine.guess_python_type(engine.literal_type(File)) is File
    assert engine.guess_python_type(engine.literal_type(File["csv"])) == File["csv"]
    assert engine.guess_python_type(engine.literal_type(Directory)) is Directory


def test_concurrent_first_reads_of_remote_blobs(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    engine = TypeEngine.with_builtins()
    store = RemoteLikeStore(tmp_path / "store")
    ctx = make_ctx(store, tmp_path)
    file_literal = engine.to_literal(write(tmp_path / "f.bin", b"payload"), File, ctx)
    dir_literal = engine.to_literal(make_tree(tmp_path / "tree", TREE), Directory, ctx)

    def read(_: int) -> tuple[bytes, list[bytes]]:
        file_value = engine.to_python(file_literal, File, ctx)
        dir_value = engine.to_python(dir_literal, Directory, ctx)
        return file_value.read_bytes(), [p.read_bytes() for p in dir_value]

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(32)))
    assert all(r == (b"payload", [b"A", b"BB", b"\x00" * 10]) for r in results)
    leftovers = [p for p in ctx.work_dir.rglob("*") if ".partial" in p.name]
    assert leftovers == []


RELATIVE_PATHS = st.lists(
    st.text(st.characters(categories=["Ll", "Nd"]), min_size=1, max_size=6), min_size=1, max_size=3
).map("/".join)


@settings(max_examples=20, deadline=None)
@given(files=st.dictionaries(RELATIVE_PATHS, st.binary(max_size=200), max_size=5))
def test_directory_round_trip_property(files: dict[str, bytes]) -> None:
    # A path cannot be both a file and a folder: drop entries that are prefixes of others.
    files = {k: v for k, v in files.items() if not any(o.startswith(k + "/") for o in files)}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        engine = TypeEngine.with_builtins()
        ctx = make_ctx(LocalBlobStore(root / "store"), root)
        literal = engine.to_literal(make_tree(root / "src" / "d", files), Directory, ctx)
        assert literal.blob.size_bytes == sum(len(v) for v in files.values())
        value = engine.to_python(literal, Directory, ctx)
        read = {p.relative_to(value.path).as_posix(): p.read_bytes() for p in value}
        assert read == files
