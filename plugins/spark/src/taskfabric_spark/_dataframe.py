"""Spark DataFrames as typed values: parquet in the blob store, passed as dataframe literals.

A Spark DataFrame output is written by Spark itself (one part file per partition, in
parallel) into a folder of the blob store, `<raw prefix>/<content hash>/data.parquet/`; the
literal carries its URI, a hash of its rows (not of the part files, whose bytes change with
the partitioning) and the frame's column types. Downstream, a
Spark task reads it with `spark.read.parquet`, and a Python task reads it as pandas through the
core's dataframe type. A Spark task can also read a pandas task's single-file frame.

Spark reads and writes the store's local path, so the data root must be a folder that the
driver and every executor see (the case for `local[N]` and a cluster on one host or on a
shared file system); other stores are staged through the driver's work folder.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfabric.core.v1 import types_pb2 as pb
from taskfabric.types import (
    Columns,
    LiteralConversionError,
    TransformContext,
    TypeTransformer,
    dataframe_literal_type,
    find_metadata,
    py_type_str,
)
from taskfabric_spark._session import session_for_values

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from taskfabric.types import TypeEngine

__all__ = ["SparkDataFrameTransformer", "spark_column_type"]

PARQUET = "parquet"

#: Spark SQL type names (`DataType.typeName()`) that hold each column type.
_SPARK_TYPES: dict[Any, tuple[str, ...]] = {
    int: ("bigint", "int", "smallint", "tinyint", "long", "integer", "short", "byte"),
    float: ("double", "float", "real"),
    str: ("string", "varchar", "char"),
    bool: ("boolean",),
    bytes: ("binary",),
    datetime: ("timestamp", "timestamp_ntz"),
    timedelta: ("interval day to second", "daytimeinterval"),
}


def spark_column_type(type_name: str) -> Any | None:
    """The Python column type of a Spark SQL type name, or None if it has none."""
    for py_type, names in _SPARK_TYPES.items():
        if type_name in names or type_name.startswith(tuple(f"{n}(" for n in names)):
            return py_type
    if type_name.startswith(("interval day", "interval hour")):
        return timedelta
    return None


def _type_name(data_type: Any) -> str:
    simple: str = data_type.simpleString()
    return simple.lower()


def _hash_parts(folder: Path) -> tuple[str, int]:
    """(`sha256:<hex>`, size) over the part files' contents, in sorted order of their own
    hashes: Spark names part files after its job, so names are left out."""
    hashes: list[str] = []
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.name.startswith((".", "_")):
            with path.open("rb") as fh:
                hashes.append(hashlib.file_digest(fh, "sha256").hexdigest())
            total += path.stat().st_size
    digest = hashlib.sha256("\n".join(sorted(hashes)).encode())
    return f"sha256:{digest.hexdigest()}", total


def _data_hash(session: SparkSession, path: str) -> str | None:
    """`sha256:<hex>` of the rows at `path` whatever their order and part files: the schema,
    the row count and three order-free sums over each row's hash (two 64-bit xxhash64 sums
    and their xor), computed by Spark where the data is. None when a column's type cannot be
    rendered as JSON (the caller falls back to the bytes)."""
    from pyspark.errors import AnalysisException
    from pyspark.sql import functions as F

    frame = session.read.parquet(path)
    row = F.to_json(F.struct(*[F.col(f"`{name}`") for name in frame.columns]))
    first = F.xxhash64(row)
    second = F.xxhash64(F.lit("taskfabric"), row)
    try:
        totals = frame.agg(
            F.count(F.lit(1)),
            F.sum(first.cast("decimal(38,0)")),
            F.sum(second.cast("decimal(38,0)")),
            F.bit_xor(first),
        ).first()
    except AnalysisException:
        return None
    assert totals is not None
    text = "\n".join([frame.schema.json(), *(str(v if v is not None else 0) for v in totals)])
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def _tidy(folder: Path) -> None:
    """Drop Spark's `_SUCCESS` marker and checksum files: only the data stays."""
    for path in list(folder.rglob("*")):
        if path.is_file() and (path.name.startswith(".") or path.name.startswith("_")):
            path.unlink()


def _read_only(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            path.chmod(0o444)


def _spark_path(local: Path) -> str:
    return local.resolve().as_uri()


class SparkDataFrameTransformer(TypeTransformer[Any]):
    """`pyspark.sql.DataFrame`, stored as a folder of parquet part files.

    `Annotated[DataFrame, Columns(a=int, b=str)]` declares columns, checked by the compiler
    against other tasks' dataframe types (Spark or pandas) and against the frame's schema when
    it is written; reading selects the declared columns.
    """

    name = "pyspark.sql.DataFrame"

    def matches(self, py_type: Any) -> bool:
        sql = sys.modules.get("pyspark.sql")
        base = getattr(sql, "DataFrame", None) if sql is not None else None
        return base is not None and isinstance(py_type, type) and issubclass(py_type, base)

    def _columns(self, py_type: Any) -> tuple[tuple[str, Any], ...]:
        declared = find_metadata(py_type, Columns)
        return tuple(declared.columns) if declared is not None else ()

    def get_literal_type(self, py_type: Any, engine: TypeEngine) -> pb.LiteralType:
        return dataframe_literal_type(py_type, engine, "Spark DataFrames")

    def _check_schema(self, frame: DataFrame, py_type: Any) -> None:
        fields = {f.name: f for f in frame.schema.fields}
        for name, column_type in self._columns(py_type):
            if name not in fields:
                shown = ", ".join(repr(c) for c in fields)
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"no such column (the frame has {shown or 'no columns'})",
                    path=f"[{name!r}]",
                )
            spark_type = _type_name(fields[name].dataType)
            if spark_column_type(spark_type) is not column_type:
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"a column of Spark type {spark_type}",
                    path=f"[{name!r}]",
                )

    def _schema_type(self, frame: DataFrame, engine: TypeEngine) -> pb.DataFrameType:
        """The frame's columns whose types taskfabric knows, as the literal's type."""
        columns = []
        for f in frame.schema.fields:
            py_type = spark_column_type(_type_name(f.dataType))
            if py_type is not None:
                columns.append(pb.DataFrameColumn(name=f.name, type=engine.literal_type(py_type)))
        return pb.DataFrameType(columns=columns, format=PARQUET)

    def to_literal(
        self, value: Any, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        expected = py_type_str(py_type)
        if not self.matches(type(value)):
            got = f"{type(value).__module__}.{type(value).__qualname__}"
            hint = ""
            if type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas"):
                hint = ": convert it with spark_session().createDataFrame(frame)"
            raise LiteralConversionError(expected, f"a {got}{hint}")
        if ctx is None:
            raise ValueError("writing a Spark DataFrame needs a TransformContext (a blob store)")
        self._check_schema(value, py_type)
        store = ctx.store
        staging_uri = f"{ctx.raw_prefix.rstrip('/')}/.spark-{uuid.uuid4().hex}"
        local_staging = store.local_path(staging_uri)
        direct = local_staging is not None
        folder = (
            local_staging
            if local_staging is not None
            else ctx.work_dir / staging_uri.rsplit("/", maxsplit=1)[-1]
        )
        target = folder / "data.parquet"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            value.write.mode("errorifexists").parquet(_spark_path(target))
            _tidy(target)
            # The bytes of a write depend on how rows fell into partitions: hash the data, so
            # that the same frame gets the same hash on every run and caches downstream hit.
            digest = _data_hash(value.sparkSession, _spark_path(target)) or _hash_parts(target)[0]
            uri = f"{ctx.raw_prefix.rstrip('/')}/{digest.removeprefix('sha256:')[:32]}/data.parquet"
            if not store.exists(uri):
                final = store.local_path(uri) if direct else None
                if final is not None:
                    final.parent.mkdir(parents=True, exist_ok=True)
                    try:
                        os.rename(target, final)
                    except OSError:  # the same content, written at the same time
                        if not final.is_dir():
                            raise
                    _read_only(final)
                else:
                    store.put_dir(target, uri)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return pb.Literal(
            dataframe=pb.DataFrameValue(
                uri=uri, content_hash=digest, type=self._schema_type(value, engine)
            )
        )

    def _session(self) -> SparkSession:
        return session_for_values()

    def to_python(
        self, literal: pb.Literal, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> Any:
        if literal.WhichOneof("value") != "dataframe":
            return self.mismatch(literal, py_type, ctx, engine)
        if ctx is None:
            raise ValueError("reading a Spark DataFrame needs a TransformContext (a blob store)")
        uri = literal.dataframe.uri
        local = ctx.store.local_path(uri)
        if local is None or not local.exists():
            local = self._download(uri, ctx)
        frame = self._session().read.parquet(_spark_path(local))
        names = [name for name, _ in self._columns(py_type)]
        return frame.select(*names) if names else frame

    def _download(self, uri: str, ctx: TransformContext) -> Path:
        digest = uuid.uuid5(uuid.NAMESPACE_URL, uri).hex
        target = ctx.work_dir / "spark-inputs" / digest / "data.parquet"
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            if any(True for _ in ctx.store.list(uri.rstrip("/") + "/")):
                ctx.store.get_dir(uri, target)
            else:
                target.mkdir()
                ctx.store.get_file(uri, target / "part-0.parquet")
        return target

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        return None  # the core's pandas type reads any dataframe literal
