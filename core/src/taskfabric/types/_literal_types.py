"""Building and rendering `LiteralType`s."""

from __future__ import annotations

from taskfabric.core.v1 import types_pb2 as pb

LiteralType = pb.LiteralType
SimpleType = pb.SimpleType

SIMPLE_NAMES: dict[int, str] = {
    pb.SIMPLE_TYPE_INTEGER: "int",
    pb.SIMPLE_TYPE_FLOAT: "float",
    pb.SIMPLE_TYPE_STRING: "str",
    pb.SIMPLE_TYPE_BOOLEAN: "bool",
    pb.SIMPLE_TYPE_BYTES: "bytes",
    pb.SIMPLE_TYPE_DATETIME: "datetime",
    pb.SIMPLE_TYPE_DURATION: "timedelta",
    pb.SIMPLE_TYPE_NONE: "None",
}


def simple_type(kind: pb.SimpleType.ValueType) -> pb.LiteralType:
    return pb.LiteralType(simple=kind)


def blob_type(fmt: str, *, multipart: bool) -> pb.LiteralType:
    dims = pb.BLOB_DIMENSIONALITY_MULTIPART if multipart else pb.BLOB_DIMENSIONALITY_SINGLE
    return pb.LiteralType(blob=pb.BlobType(format=fmt, dimensionality=dims))


def short_type_name(qualified: str) -> str:
    """`Point` for `my.module.Point` (informational names are shown short)."""
    return qualified.rsplit(".", 1)[-1] or qualified


def type_str(lt: pb.LiteralType) -> str:
    """A human-readable rendering of a literal type.

    Examples: `int`, `list[int]`, `dict[str, float]`, `Point{x: float, y: float}`,
    `int | None`, `Color(RED, GREEN)`, `File`, `File[csv]`, `Directory`,
    `DataFrame[parquet]{a: int}`.
    """
    kind = lt.WhichOneof("type")
    if kind == "simple":
        return SIMPLE_NAMES.get(lt.simple, "<unspecified>")
    if kind == "list_type":
        return f"list[{type_str(lt.list_type)}]"
    if kind == "map_value_type":
        return f"dict[str, {type_str(lt.map_value_type)}]"
    if kind == "record":
        fields = ", ".join(f"{f.name}: {type_str(f.type)}" for f in lt.record.fields)
        return f"{short_type_name(lt.record.name)}{{{fields}}}"
    if kind == "enum_type":
        return f"{short_type_name(lt.enum_type.name)}({', '.join(lt.enum_type.values)})"
    if kind == "union_type":
        return " | ".join(type_str(v) for v in lt.union_type.variants)
    if kind == "blob":
        base = "Directory" if lt.blob.dimensionality == pb.BLOB_DIMENSIONALITY_MULTIPART else "File"
        return f"{base}[{lt.blob.format}]" if lt.blob.format else base
    if kind == "dataframe":
        df = lt.dataframe
        text = f"DataFrame[{df.format}]" if df.format else "DataFrame"
        if df.columns:
            text += "{" + ", ".join(f"{c.name}: {type_str(c.type)}" for c in df.columns) + "}"
        return text
    return "<unset>"
