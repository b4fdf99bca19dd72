"""Flink Tables as typed values: a Table returned by a task becomes a dataframe literal
(parquet in the blob store, the format every dataframe type of taskfabric reads); a
dataframe input declared as a Table is read into the attempt's table environment.

A returned Table is collected by the client (`Table.to_pandas()`, a job named after the
attempt like the task's own) and written as one parquet file; a Table input is the stored
frame given to Flink with `from_pandas`. Both go through the client, so they suit the data
a task hands to the next one, not a lake: write big outputs with a Flink sink and return
their path.
"""

from __future__ import annotations

import sys
from datetime import datetime, timedelta
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
from taskfabric_flink._environment import table_env

if TYPE_CHECKING:
    from taskfabric.types import TypeEngine

__all__ = ["FlinkTableTransformer", "flink_column_type"]

#: Flink logical type roots (`DataType.getLogicalType().getTypeRoot()`) per column type.
_FLINK_TYPES: dict[Any, tuple[str, ...]] = {
    int: ("BIGINT", "INTEGER", "SMALLINT", "TINYINT"),
    float: ("DOUBLE", "FLOAT"),
    str: ("VARCHAR", "CHAR"),
    bool: ("BOOLEAN",),
    bytes: ("VARBINARY", "BINARY"),
    datetime: ("TIMESTAMP_WITHOUT_TIME_ZONE", "TIMESTAMP_WITH_LOCAL_TIME_ZONE"),
    timedelta: ("INTERVAL_DAY_TIME",),
}


def flink_column_type(type_root: str) -> Any | None:
    """The Python column type of a Flink type root, or None if it has none."""
    for py_type, roots in _FLINK_TYPES.items():
        if type_root in roots:
            return py_type
    return None


def _schema(table: Any) -> list[tuple[str, str]]:
    """(column name, Flink type root) of each column of a Table."""
    resolved = table._j_table.getResolvedSchema()
    out: list[tuple[str, str]] = []
    for column in resolved.getColumns():
        root = str(column.getDataType().getLogicalType().getTypeRoot().name())
        out.append((str(column.getName()), root))
    return out


class FlinkTableTransformer(TypeTransformer[Any]):
    """`pyflink.table.Table`, stored as a parquet dataframe literal.

    `Annotated[Table, Columns(a=int, b=str)]` declares columns, checked against other tasks'
    dataframe types when the workflow compiles and against the Table's schema when it is
    written; reading selects the declared columns.
    """

    name = "pyflink.table.Table"

    def matches(self, py_type: Any) -> bool:
        table_module = sys.modules.get("pyflink.table.table")
        base = getattr(table_module, "Table", None) if table_module is not None else None
        return base is not None and isinstance(py_type, type) and issubclass(py_type, base)

    def _columns(self, py_type: Any) -> tuple[tuple[str, Any], ...]:
        declared = find_metadata(py_type, Columns)
        return tuple(declared.columns) if declared is not None else ()

    def get_literal_type(self, py_type: Any, engine: TypeEngine) -> pb.LiteralType:
        return dataframe_literal_type(py_type, engine, "Flink Tables")

    def _check_schema(self, schema: list[tuple[str, str]], py_type: Any) -> None:
        fields = dict(schema)
        for name, column_type in self._columns(py_type):
            if name not in fields:
                shown = ", ".join(repr(c) for c in fields)
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"no such column (the Table has {shown or 'no columns'})",
                    path=f"[{name!r}]",
                )
            if flink_column_type(fields[name]) is not column_type:
                raise LiteralConversionError(
                    f"a column of {py_type_str(column_type)}",
                    f"a column of Flink type {fields[name]}",
                    path=f"[{name!r}]",
                )

    def to_literal(
        self, value: Any, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> pb.Literal:
        if not self.matches(type(value)):
            got = f"{type(value).__module__}.{type(value).__qualname__}"
            hint = ""
            if type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas"):
                hint = (
                    ": convert it with t_env.from_pandas(frame) (t_env: the task's "
                    "TableEnvironment), or declare pd.DataFrame"
                )
            elif type(value).__name__ == "DataStream":
                hint = ": convert it with t_env.from_data_stream(stream)"
            raise LiteralConversionError(py_type_str(py_type), f"a {got}{hint}")
        if ctx is None:
            raise ValueError("writing a Flink Table needs a TransformContext (a blob store)")
        import pandas as pd

        schema = _schema(value)
        self._check_schema(schema, py_type)
        frame = value.to_pandas()
        literal = engine.to_literal(frame, pd.DataFrame, ctx)
        columns = []
        for name, root in schema:
            column_type = flink_column_type(root)
            if column_type is not None:
                columns.append(pb.DataFrameColumn(name=name, type=engine.literal_type(column_type)))
        del literal.dataframe.type.columns[:]
        literal.dataframe.type.columns.extend(columns)
        return literal

    def to_python(
        self, literal: pb.Literal, py_type: Any, ctx: TransformContext | None, engine: TypeEngine
    ) -> Any:
        if literal.WhichOneof("value") != "dataframe":
            return self.mismatch(literal, py_type, ctx, engine)
        import pandas as pd

        frame = engine.to_python(literal, pd.DataFrame, ctx)
        names = [name for name, _ in self._columns(py_type)]
        if names:
            frame = frame[names]
        if isinstance(frame.index, pd.RangeIndex):
            frame = frame.reset_index(drop=True)
        return table_env().from_pandas(frame)

    def guess_python_type(self, literal_type: pb.LiteralType, engine: TypeEngine) -> Any | None:
        return None  # the core's pandas type reads any dataframe literal
