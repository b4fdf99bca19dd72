"""pandas DataFrames, stored as parquet blobs.

pandas and pyarrow are imported only when a DataFrame is converted: a class can only be a
pandas DataFrame if pandas is already loaded, so matching looks at `sys.modules`.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types._blob_transformers import stored_blob, upload_path
from taskfabric.types._blobs import (
    Format,
    _materialize_dir,
    _materialize_file,
    hash_file,
    make_read_only,
)
from taskfabric.types._context import TransformContext, require_context
from taskfabric.types._errors import LiteralConversionError, UnsupportedTypeError, describe_value
from taskfabric.types._pytypes import TypeHint, find_metadata, py_type_str
from taskfabric.types._transformer import TypeTransformer

if TYPE_CHECKING:
    from taskfabric.types._engine import TypeEngine

PARQUET = "parquet"


class Columns:
    """Declares a DataFrame's columns: `Annotated[pd.DataFrame, Columns(a=int, b=str)]`.

    Column types are scalars (int, float, str, bool, bytes, datetime, timedelta). Writing a
    frame checks that every declared column exists with a matching dtype (extra columns
    are kept); reading loads only the declared columns. Names that are not identifiers go
    in a mapping: `Columns({"unit price": float})`.
    """

    __slots__ = ("columns",)

    def __init__(self, mapping: Mapping[str, Any] | None = None, /, **columns: Any) -> None:
        merged = {**(mapping or {}), **columns}
        self.columns: tuple[tuple[str, Any], ...] = tuple(merged.items())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Columns) and other.columns == self.columns

    def __hash__(self) -> int:
        return hash(self.columns)

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={py_type_str(t)}" for name, t in self.columns)
        return f"Columns({inner})"


def _dtype_fits(series: Any, py_type: Any) -> bool:
    from pandas.api import types as ptypes

    dtype = series.dtype
    if py_type is bool:
        return bool(ptypes.is_bool_dtype(dtype))
    if py_type is int:
        return bool(ptypes.is_integer_dtype(dtype)) and not ptypes.is_bool_dtype(dtype)
    if py_type is float:
        return bool(ptypes.is_float_dtype(dtype))
    if py_type is str:
        return bool(ptypes.is_string_dtype(series)) and ptypes.infer_dtype(series) in (
            "string",
            "empty",
        )
    if py_type is bytes:
        return ptypes.infer_dtype(series) in ("bytes", "empty")
    if py_type is datetime:
        return bool(ptypes.is_datetime64_any_dtype(dtype))
    if py_type is timedelta:
        return bool(ptypes.is_timedelta64_dtype(dtype))
    return False


_COLUMN_TYPES = (int, float, str, bool, bytes, datetime, timedelta)


def dataframe_literal_type(py_type: TypeHint, engine: TypeEngine, what: str) -> pb.LiteralType:
    """The dataframe literal type (parquet, with the `Columns(...)` declared on `py_type`) of
    a dataframe type: the core's pandas one, or a plugin's (`what`, e.g. "Spark DataFrames",
    names it in errors). So every dataframe type of any library fits every other by columns."""
    fmt = find_metadata(py_type, Format)
    if fmt is not None and fmt.name != PARQUET:
        raise UnsupportedTypeError(
            py_type, f"{what} are stored as parquet, not {fmt.name!r}: drop Format"
        )
    declared = find_metadata(py_type, Columns)
    columns = []
    for name, column_type in declared.columns if declared is not None else ():
        if column_type not in _COLUMN_TYPES:
            raise UnsupportedTypeError(
                py_type,
                f"column {name!r} has type `{py_type_str(column_type)}`: column types "
                "must be int, float, str, bool, bytes, datetime or timedelta",
            )
        columns.append(
            pb.DataFrameColumn(name=name, type=engine.nested_literal_type(py_type, column_type))
        )
    return pb.LiteralType(dataframe=pb.DataFrameType(columns=columns, format=PARQUET))


def _dataframe_path(frame: pb.DataFrameValue, ctx: TransformContext) -> Path:
    """A local copy of a stored frame: one parquet file, or a folder of part files (as
    engines such as Spark write them, in parallel)."""
    as_blob = pb.Literal(blob=pb.BlobValue(uri=frame.uri, content_hash=frame.content_hash))
    stored = stored_blob(as_blob, ctx)
    local = ctx.store.local_path(frame.uri)
    if local is not None:
        return _materialize_dir(stored) if local.is_dir() else _materialize_file(stored)
    if any(True for _ in ctx.store.list(frame.uri.rstrip("/") + "/")):
        return _materialize_dir(stored)
    return _materialize_file(stored)


class PandasDataFrameTransformer(TypeTransformer[Any]):
    """`pandas.DataFrame`, stored as a parquet file (needs pandas and pyarrow).

    Optional `Annotated[pd.DataFrame, Columns(...)]` declares columns. The index is kept as
    pandas writes it to parquet.
    """

    name = "pandas.DataFrame"

    def matches(self, py_type: TypeHint) -> bool:
        pandas = sys.modules.get("pandas")
        return (
            pandas is not None
            and isinstance(py_type, type)
            and issubclass(py_type, pandas.DataFrame)
        )

    def _columns(self, py_type: TypeHint) -> tuple[tuple[str, Any], ...]:
        declared = find_metadata(py_type, Columns)
        return declared.columns if declared is not None else ()

    def get_literal_type(self, py_type: TypeHint, engine: TypeEngine) -> pb.LiteralType:
        return dataframe_literal_type(py_type, engine, "pandas DataFrames")

    def to_literal(
        self, value: Any, py_type: TypeHint, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        import pandas as pd

        expected = py_type_str(py_type)
        if not isinstance(value, pd.DataFrame):
            raise LiteralConversionError(expected, describe_value(value))
        for name, column_type in self._columns(py_type):
            if name not in value.columns:
                shown = ", ".join(repr(str(c)) for c in value.columns)
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"no such column (the frame has {shown or 'no columns'})",
                    path=f"[{name!r}]",
                )
            if not _dtype_fits(value[name], column_type):
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"a column of dtype {value[name].dtype}",
                    path=f"[{name!r}]",
                )
        ctx = require_context(ctx, "DataFrame")
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
        local = ctx.work_dir / f".dataframe-{uuid.uuid4().hex}.parquet"
        try:
            try:
                value.to_parquet(local)
            except (ValueError, TypeError) as error:  # e.g. non-string column names
                raise LiteralConversionError(
                    expected, "a DataFrame that parquet cannot store", detail=str(error)
                ) from error
            digest, _ = hash_file(local)
            uri = upload_path(ctx, digest, "data.parquet")
            if not ctx.store.exists(uri):
                ctx.store.put_file(local, uri)
                stored = ctx.store.local_path(uri)
                if stored is not None:
                    make_read_only(stored)
        finally:
            if os.path.exists(local):
                local.unlink()
        literal_type = engine.literal_type(py_type)
        return pb.Literal(
            dataframe=pb.DataFrameValue(uri=uri, content_hash=digest, type=literal_type.dataframe)
        )

    def to_python(
        self,
        literal: pb.Literal,
        py_type: TypeHint,
        ctx: TransformContext | None,
        engine: TypeEngine,
    ) -> Any:
        if literal.WhichOneof("value") != "dataframe":
            return self.mismatch(literal, py_type, ctx, engine)
        import pandas as pd

        ctx = require_context(ctx, "DataFrame")
        path = _dataframe_path(literal.dataframe, ctx)
        names = [name for name, _ in self._columns(py_type)]
        return pd.read_parquet(path, columns=names or None)

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        if literal_type.WhichOneof("type") != "dataframe":
            return None
        try:
            import pandas as pd
        except ImportError:
            return None
        from typing import Annotated

        columns = {c.name: engine.guess_python_type(c.type) for c in literal_type.dataframe.columns}
        return Annotated[pd.DataFrame, Columns(columns)] if columns else pd.DataFrame
