"""Transformers for File, Directory and pathlib.Path (blob literals)."""

from __future__ import annotations

import os
from pathlib import Path, PurePath
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._blobs import (
    Directory,
    File,
    Format,
    StoredBlob,
    hash_directory,
    hash_file,
    make_read_only,
)
from taskfabric.types._context import TransformContext, require_context
from taskfabric.types._errors import LiteralConversionError, describe_value
from taskfabric.types._literal_types import blob_type
from taskfabric.types._pytypes import TypeHint, find_metadata, py_type_str, strip_annotated
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine

_SINGLE = pb.BLOB_DIMENSIONALITY_SINGLE
_MULTIPART = pb.BLOB_DIMENSIONALITY_MULTIPART


def declared_format(py_type: TypeHint) -> str:
    fmt = find_metadata(py_type, Format)
    return fmt.name if fmt is not None else ""


def upload_path(ctx: TransformContext, digest: str, name: str) -> str:
    """`<raw prefix>/<first 32 hex digits of the hash>/<name>`: content-addressed, so the
    same content uploaded twice under one prefix is stored once."""
    return f"{ctx.raw_prefix.rstrip('/')}/{digest.removeprefix('sha256:')[:32]}/{quote(name)}"


def upload_file(path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
    digest, size = hash_file(path)
    uri = upload_path(ctx, digest, path.name or "file")
    if not ctx.store.exists(uri):
        ctx.store.put_file(path, uri)
        _protect(ctx, uri)
    return pb.BlobValue(
        uri=uri,
        content_hash=digest,
        size_bytes=size,
        type=pb.BlobType(format=fmt, dimensionality=_SINGLE),
    )


def upload_directory(path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
    digest, size = hash_directory(path)
    uri = upload_path(ctx, digest, path.name or "dir")
    if not ctx.store.exists(uri):
        ctx.store.put_dir(path, uri)
        _protect(ctx, uri)
    return pb.BlobValue(
        uri=uri,
        content_hash=digest,
        size_bytes=size,
        type=pb.BlobType(format=fmt, dimensionality=_MULTIPART),
    )


def _protect(ctx: TransformContext, uri: str) -> None:
    local = ctx.store.local_path(uri)
    if local is not None:
        make_read_only(local)


def stored_blob(literal: pb.Literal, ctx: TransformContext) -> StoredBlob:
    blob = literal.blob
    return StoredBlob(
        uri=blob.uri,
        content_hash=blob.content_hash,
        size_bytes=blob.size_bytes,
        format=blob.type.format,
        store=ctx.store,
        work_dir=ctx.work_dir,
    )


class _BlobTransformer(TypeTransformer[Any]):
    dimensionality: pb.BlobDimensionality.ValueType
    kind: str  # "file" or "directory", for messages
    blob_class: type[File] | type[Directory]

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        return blob_type(declared_format(py_type), multipart=self.dimensionality == _MULTIPART)

    def _upload(self, path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
        raise NotImplementedError

    def _exists(self, path: Path) -> bool:
        return path.is_dir() if self.dimensionality == _MULTIPART else path.is_file()

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        fmt = declared_format(py_type)
        expected = py_type_str(py_type)
        if isinstance(value, self.blob_class) and value.stored is not None:
            return self._pass_through(value.stored, fmt, expected)
        if isinstance(value, (File, Directory)) and value.stored is not None:
            raise LiteralConversionError(expected, describe_value(value))
        if isinstance(value, (File, Directory)):
            path = value.path
        elif isinstance(value, (str, os.PathLike)):
            path = Path(value)
        else:
            raise LiteralConversionError(expected, describe_value(value))
        if not self._exists(path):
            problem = f"not a {self.kind}" if path.exists() else "does not exist"
            raise LiteralConversionError(expected, f"path {str(path)!r}", detail=problem)
        ctx = require_context(ctx, self.kind)
        return pb.Literal(blob=self._upload(path, ctx, fmt))

    def _pass_through(self, stored: StoredBlob, fmt: str, expected: str) -> pb.Literal:
        if fmt and stored.format and fmt != stored.format:
            raise LiteralConversionError(
                expected, f"a stored {self.kind} of format {stored.format!r}"
            )
        return pb.Literal(
            blob=pb.BlobValue(
                uri=stored.uri,
                content_hash=stored.content_hash,
                size_bytes=stored.size_bytes,
                type=pb.BlobType(format=fmt or stored.format, dimensionality=self.dimensionality),
            )
        )

    def _stored(self, literal: pb.Literal, py_type: TypeHint, ctx: TransformContext | None) -> Any:
        if literal.blob.type.dimensionality != self.dimensionality:
            raise LiteralConversionError(py_type_str(py_type), "a blob of another dimensionality")
        return stored_blob(literal, require_context(ctx, self.kind))


class FileTransformer(_BlobTransformer):
    """`File` (and subclasses): a single-file blob; values may be File, Path or str."""

    name = "File"
    python_types = (File,)
    dimensionality = _SINGLE
    kind = "file"
    blob_class = File

    def matches(self, py_type: TypeHint) -> bool:
        return isinstance(py_type, type) and issubclass(py_type, File)

    def _upload(self, path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
        return upload_file(path, ctx, fmt)

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> File:
        if literal.WhichOneof("value") != "blob":
            result: File = self.mismatch(literal, py_type, ctx, engine)
            return result
        cls: type[File] = strip_annotated(py_type)[0]
        built: File = cls.from_stored(self._stored(literal, py_type, ctx))
        return built

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") != "blob" or literal_type.blob.dimensionality != _SINGLE:
            return None
        fmt = literal_type.blob.format
        return Annotated[File, Format(fmt)] if fmt else File


class DirectoryTransformer(_BlobTransformer):
    """`Directory` (and subclasses): a multi-file blob; values may be Directory, Path or str."""

    name = "Directory"
    python_types = (Directory,)
    dimensionality = _MULTIPART
    kind = "directory"
    blob_class = Directory

    def matches(self, py_type: TypeHint) -> bool:
        return isinstance(py_type, type) and issubclass(py_type, Directory)

    def _upload(self, path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
        return upload_directory(path, ctx, fmt)

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Directory:
        if literal.WhichOneof("value") != "blob":
            result: Directory = self.mismatch(literal, py_type, ctx, engine)
            return result
        cls: type[Directory] = strip_annotated(py_type)[0]
        built: Directory = cls.from_stored(self._stored(literal, py_type, ctx))
        return built

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if (
            literal_type.WhichOneof("type") != "blob"
            or literal_type.blob.dimensionality != _MULTIPART
        ):
            return None
        fmt = literal_type.blob.format
        return Annotated[Directory, Format(fmt)] if fmt else Directory


class PathTransformer(_BlobTransformer):
    """`pathlib.Path`: a single file, read back as a local (read-only) Path.

    Reading it fetches the file at once (a Path cannot be lazy); prefer `File` for inputs
    that a task may not read.
    """

    name = "pathlib.Path"
    python_types = (Path,)
    dimensionality = _SINGLE
    kind = "file"
    blob_class = File

    def matches(self, py_type: TypeHint) -> bool:
        return isinstance(py_type, type) and issubclass(py_type, PurePath)

    def _upload(self, path: Path, ctx: TransformContext, fmt: str) -> pb.BlobValue:
        return upload_file(path, ctx, fmt)

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Path:
        if literal.WhichOneof("value") != "blob":
            result: Path = self.mismatch(literal, py_type, ctx, engine)
            return result
        return File.from_stored(self._stored(literal, py_type, ctx)).path  # type: ignore[no-any-return]
