"""Files, directories and dataframes among an execution's values, for the node panel: a
preview (a text file's first lines, a CSV file's or a dataframe's first rows as a table, a
directory's files) and the bytes themselves.

A directory, or a dataframe stored as several part files (as Spark writes one), downloads
as one archive (`archive=tar`, the default, or `zip`) streamed as it is read: nothing is
packed in memory or on disk first.

A value is named, never its URI: the execution (which the token must see), the node (none:
the execution's own inputs or outputs), the side, the input or output name and the place
inside the value (`at`: list indices and record or map keys joined by '/'). The server reads
the blob that literal holds, so a token reaches only the data of executions it sees.
"""

from __future__ import annotations

import csv
import io
import itertools
import posixpath
import shutil
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from taskfabric.console import _models as cm
from taskfabric.console import _queries as cq
from taskfabric.core.v1 import types_pb2
from taskfabric.metadata import ExecutionRecord
from taskfabric.server._app import API_PREFIX, Plane, RefPath, Who
from taskfabric.server._service import ControlPlane, Invalid, NotFound
from taskfabric.storage import BlobStore

router = APIRouter(prefix=API_PREFIX, tags=["console"])

#: The most bytes of a text file a preview reads, and of a file fetched from a remote store
#: to preview it (a local store's files are read in place, only as far as needed).
TEXT_BYTES = 64 * 1024
FETCH_BYTES = 256 * 1024 * 1024
MAX_LINES = 200
MAX_ROWS = 200
MAX_FILES = 200

Side = Annotated[Literal["inputs", "outputs"], Query(description="inputs or outputs")]
NodeQuery = Annotated[
    str, Query(max_length=1024, description="A node id; empty: the execution's own values.")
]
NameQuery = Annotated[str, Query(min_length=1, max_length=255, description="Input or output.")]
AtQuery = Annotated[
    str,
    Query(
        max_length=1024,
        description="Inside the value: list indices and record or map keys joined by '/'.",
    ),
]


def _literal(
    plane: ControlPlane, rec: ExecutionRecord, node: str, side: str, name: str, at: str
) -> types_pb2.Literal:
    if node:
        found = cq.node(plane.metadata, rec.id, node)
        if found is None:
            raise NotFound(f"execution {rec.id} has no node '{node}' that started")
        uri = found.inputs_uri if side == "inputs" else found.outputs_uri
    else:
        uri = rec.inputs_uri if side == "inputs" else rec.outputs_uri
    values = plane.engine.read_literals(uri)
    where = f"node '{node}'" if node else f"execution {rec.id}"
    if values is None or name not in values.literals:
        raise NotFound(f"{where} has no {side[:-1]} '{name}' (yet)")
    lit = values.literals[name]
    for step in [s for s in at.split("/") if s] if at else []:
        while lit.WhichOneof("value") == "union":
            lit = lit.union.value
        kind = lit.WhichOneof("value")
        if kind == "list" and step.isdigit() and int(step) < len(lit.list.literals):
            lit = lit.list.literals[int(step)]
        elif kind == "map" and step in lit.map.literals:
            lit = lit.map.literals[step]
        elif kind == "record" and step in lit.record.fields:
            lit = lit.record.fields[step]
        else:
            raise NotFound(f"{side[:-1]} '{name}' of {where} has nothing at '{at}'")
    while lit.WhichOneof("value") == "union":
        lit = lit.union.value
    if lit.WhichOneof("value") not in ("blob", "dataframe"):
        raise Invalid(f"{side[:-1]} '{name}' at '{at}' is not a file, directory or dataframe")
    return lit


class _Blob:
    """The stored data of one literal."""

    def __init__(self, store: BlobStore, lit: types_pb2.Literal) -> None:
        self.store = store
        if lit.WhichOneof("value") == "dataframe":
            self.kind = "dataframe"
            self.uri = lit.dataframe.uri
            self.format = lit.dataframe.type.format or "parquet"
            self.size: int | None = None
        else:
            multipart = lit.blob.type.dimensionality == types_pb2.BLOB_DIMENSIONALITY_MULTIPART
            self.kind = "directory" if multipart else "file"
            self.uri = lit.blob.uri
            self.format = lit.blob.type.format
            self.size = lit.blob.size_bytes or None
        self.name = posixpath.basename(self.uri.rstrip("/")) or "data"
        if self.uri.startswith("file:"):
            self.name = unquote(self.name)  # a local store's URIs are percent-encoded
        self.files: list[str] | None = None

    def parts(self) -> list[str]:
        """The blobs of a directory (or of a dataframe stored as part files), sorted."""
        if self.files is None:
            prefix = self.uri.rstrip("/") + "/"
            found: list[str] = []
            for uri in self.store.list(prefix):
                found.append(uri)
                if len(found) > MAX_FILES:
                    break
            self.files = found
        return self.files

    def multipart(self) -> bool:
        """A directory, or a dataframe stored as a folder of part files."""
        if self.kind != "dataframe":
            return self.kind == "directory"
        local = self.store.local_path(self.uri)
        if local is not None:
            return local.is_dir()
        return bool(self.parts())

    def members(self) -> Iterator[tuple[str, str]]:
        """(path inside the value, URI) of every file of a directory or multi-part frame,
        sorted, however many."""
        local = self.store.local_path(self.uri)
        if local is not None:
            if not local.is_dir():
                raise NotFound(f"no data at {self.uri} (was it deleted?)")
            for path in sorted(p for p in local.rglob("*") if p.is_file()):
                if not (path.name.startswith(".") and path.name.endswith(".tmp")):
                    yield path.relative_to(local).as_posix(), path.as_uri()
            return
        prefix = self.uri.rstrip("/") + "/"
        for uri in self.store.list(prefix):
            yield uri[len(prefix) :], uri

    def single(self) -> str:
        """The URI of the one file to read: the file, or a dataframe's first part."""
        if self.kind == "file":
            return self.uri
        if self.kind == "dataframe":
            local = self.store.local_path(self.uri)
            if (local is not None and local.is_file()) or (local is None and not self.parts()):
                return self.uri
            data = [u for u in self.parts() if u.endswith(".parquet")]
            if data:
                return data[0]
        raise Invalid(f"the {self.kind} at {self.uri} is not one file: preview its files")

    def open(self, uri: str, stack: Any) -> Path:
        """A local path of `uri`: the store's own, or a copy in a temp folder (at most
        FETCH_BYTES: a preview never downloads more)."""
        local = self.store.local_path(uri)
        if local is not None:
            if not local.is_file():
                raise NotFound(f"no data at {uri} (was it deleted?)")
            return local
        if self.size is not None and self.size > FETCH_BYTES:
            raise Invalid(f"{self.name} is {self.size} bytes: too large to preview; download it")
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tf-preview-")))
        target = folder / "data"
        self.store.get_file(uri, target)
        return target


def _text(path: Path, lines: int) -> tuple[str, int, bool, bool]:
    """(text, lines shown, cut short, binary) of a file's first lines."""
    with path.open("rb") as fh:
        head = fh.read(TEXT_BYTES + 1)
    cut = len(head) > TEXT_BYTES
    head = head[:TEXT_BYTES]
    if b"\0" in head[:8192]:
        return "", 0, cut, True
    text = head.decode("utf-8", "replace")
    found = text.splitlines(keepends=True)
    if cut and found and not found[-1].endswith(("\n", "\r")):
        found.pop()  # a line the read cut in two
    shown = found[:lines]
    return "".join(shown), len(shown), cut or len(found) > lines, False


def _csv_rows(text: str, rows: int) -> tuple[list[str], list[list[Any]]]:
    reader = csv.reader(io.StringIO(text))
    found = [r for _, r in zip(range(rows + 1), reader, strict=False)]
    return (found[0], found[1:]) if found else ([], [])


def _parquet_rows(path: Path, rows: int) -> tuple[list[str], list[list[Any]], int]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise Invalid(
            "previewing a dataframe needs pyarrow on the server: pip install 'taskfabric[pandas]'"
        ) from None
    parquet = pq.ParquetFile(path)
    columns = [str(c) for c in parquet.schema_arrow.names]
    found: list[list[Any]] = []
    for batch in parquet.iter_batches(batch_size=max(1, rows)):
        found = [[_cell(v) for v in row.values()] for row in batch.to_pylist()[:rows]]
        break
    return columns, found, int(parquet.metadata.num_rows)


def _parquet_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def _cell(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _archive(blob: _Blob, kind: str) -> Iterator[bytes]:
    """The files of a directory or multi-part frame as one tar or zip, in pieces as they are
    read (a remote store's files are fetched one at a time into a temp folder)."""
    top = blob.name.removesuffix(".parquet") if blob.kind == "dataframe" else blob.name
    with tempfile.TemporaryDirectory(prefix="tf-archive-") as folder:
        fetched = Path(folder) / "part"

        def local(uri: str) -> Path:
            found = blob.store.local_path(uri)
            if found is not None:
                return found
            blob.store.get_file(uri, fetched)
            return fetched

        members = ((f"{top}/{inside}", local, uri) for inside, uri in blob.members())
        yield from (_tar(members) if kind == "tar" else _zip(members))


Member = tuple[str, Callable[[str], Path], str]


def _chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as fh:
        yield from iter(lambda: fh.read(1 << 20), b"")


def _tar(members: Iterator[Member]) -> Iterator[bytes]:
    for name, local, uri in members:
        path = local(uri)
        info = tarfile.TarInfo(name)
        info.size = path.stat().st_size
        info.mtime = int(path.stat().st_mtime)
        info.mode = 0o644
        yield info.tobuf(format=tarfile.PAX_FORMAT)
        yield from _chunks(path)
        if info.size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)
    yield b"\0" * (tarfile.BLOCKSIZE * 2)


class _Sink(io.RawIOBase):
    """What zipfile writes, handed out as it comes (a stream it cannot seek)."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.pieces.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        found, self.pieces = b"".join(self.pieces), []
        return found


def _zip(members: Iterator[Member]) -> Iterator[bytes]:
    sink = _Sink()
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, local, uri in members:
            path = local(uri)
            info = zipfile.ZipInfo(name, time.localtime(path.stat().st_mtime)[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.file_size = path.stat().st_size
            with archive.open(info, "w") as out:
                for chunk in _chunks(path):
                    out.write(chunk)
                    yield sink.take()
            yield sink.take()
    yield sink.take()


def _download_url(ref: str, node: str, side: str, name: str, at: str) -> str:
    query = f"node={quote(node, safe='')}&side={side}&name={quote(name, safe='')}"
    if at:
        query += f"&at={quote(at, safe='')}"
    return f"{API_PREFIX}/executions/{quote(ref, safe='')}/values/download?{query}"


@router.get(
    "/executions/{ref}/values/preview",
    summary="Preview a file, directory or dataframe among an execution's values",
    description="A text file's first `lines` (a CSV file's first `rows` as a table too), a "
    "dataframe's columns and first `rows`, a directory's files. The value is named by its "
    "node, side, name and place `at` inside it, never by URI.",
)
def preview(
    plane: Plane,
    who: Who,
    ref: RefPath,
    side: Side,
    name: NameQuery,
    node: NodeQuery = "",
    at: AtQuery = "",
    lines: Annotated[int, Query(ge=1, le=MAX_LINES)] = 20,
    rows: Annotated[int, Query(ge=1, le=MAX_ROWS)] = 10,
) -> cm.Preview:
    import contextlib

    rec = plane._execution(who, ref)
    blob = _Blob(plane.engine.store, _literal(plane, rec, node, side, name, at))
    found = cm.Preview(
        kind=blob.kind,
        name=blob.name,
        uri=blob.uri,
        format=blob.format,
        size_bytes=blob.size,
        download=_download_url(rec.id, node, side, name, at),
    )
    with contextlib.ExitStack() as stack:
        if blob.kind == "directory":
            files = [inside for inside, _ in itertools.islice(blob.members(), MAX_FILES + 1)]
            found.files = files[:MAX_FILES]
            found.truncated = len(files) > MAX_FILES
        elif blob.kind == "dataframe":
            columns, table, first = _parquet_rows(blob.open(blob.single(), stack), rows)
            total: int | None = first
            if blob.multipart():
                # the first part's rows; the total is every part's, when they are at hand
                data = [u for u in blob.parts() if u.endswith(".parquet")]
                found.files = [i for i, _ in itertools.islice(blob.members(), MAX_FILES)]
                local = [blob.store.local_path(u) for u in data]
                counts = [_parquet_count(p) for p in local if p is not None]
                total = sum(counts) if len(counts) == len(data) <= MAX_FILES else None
            found.columns, found.rows, found.total_rows = columns, table, total
            found.truncated = total is None or total > len(table)
        else:
            text, shown, cut, binary = _text(blob.open(blob.uri, stack), lines)
            found.text, found.lines, found.truncated, found.binary = text, shown, cut, binary
            if not binary and (blob.format == "csv" or blob.name.lower().endswith(".csv")):
                found.columns, found.rows = _csv_rows(text, rows)
    return found


_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "no-store",
}


def _attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}"}


@router.get(
    "/executions/{ref}/values/download",
    summary="The bytes of a file, directory or dataframe among an execution's values",
    description="Sent as an attachment (application/octet-stream), never shown as a page. "
    "A directory, or a dataframe stored as several part files, comes as one archive of its "
    "files under a folder of its name (`archive`: tar or zip), streamed as it is read.",
    response_class=StreamingResponse,
)
def download(
    plane: Plane,
    who: Who,
    ref: RefPath,
    side: Side,
    name: NameQuery,
    node: NodeQuery = "",
    at: AtQuery = "",
    archive: Annotated[
        Literal["tar", "zip"],
        Query(description="The archive of a directory or a multi-part dataframe."),
    ] = "tar",
) -> StreamingResponse:
    rec = plane._execution(who, ref)
    blob = _Blob(plane.engine.store, _literal(plane, rec, node, side, name, at))
    if blob.multipart():
        top = blob.name.removesuffix(".parquet") if blob.kind == "dataframe" else blob.name
        return StreamingResponse(
            _archive(blob, archive),
            media_type="application/octet-stream",
            headers={**_attachment(f"{top}.{archive}"), **_HEADERS},
        )
    uri = blob.single()
    local = blob.store.local_path(uri)
    folder = None
    if local is None:
        folder = Path(tempfile.mkdtemp(prefix="tf-download-"))
        local = folder / "data"
        blob.store.get_file(uri, local)
    elif not local.is_file():
        raise NotFound(f"no data at {uri} (was it deleted?)")
    filename = blob.name if blob.kind == "file" else f"{blob.name.removesuffix('.parquet')}.parquet"

    def chunks() -> Iterator[bytes]:
        try:
            with local.open("rb") as fh:
                yield from iter(lambda: fh.read(1 << 20), b"")
        finally:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)

    headers = {**_attachment(filename), **_HEADERS}
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
