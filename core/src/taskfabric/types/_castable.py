"""Whether a value of one literal type may be bound where another is expected."""

from __future__ import annotations

from taskfabric.core.v1 import types_pb2 as pb

_NONE = pb.SIMPLE_TYPE_NONE


def is_castable(source: pb.LiteralType, target: pb.LiteralType) -> bool:
    """Whether a value of type `source` can be bound to an input of type `target`.

    Rules (no numeric widening: int is NOT castable to float):

    - identical types;
    - to a union: a union whose every variant casts to some target variant; any other
      type that casts to one of the target's variants (so `None` fits `T | None`);
    - from a union to a non-union: when every variant casts to the target;
    - list and dict: element-wise;
    - records: the same field names with castable field types (class names are ignored);
    - enums: the source's values are a subset of the target's (names are ignored);
    - blobs: the same dimensionality and equal formats, or either format empty;
    - dataframes: compatible formats (equal or either empty), and each column the target
      declares exists in the source with a castable type; allowed when either side
      declares no columns.
    """
    if source == target:
        return True
    source_kind = source.WhichOneof("type")
    target_kind = target.WhichOneof("type")
    if target_kind == "union_type":
        variants = target.union_type.variants
        if source_kind == "union_type":
            return all(any(is_castable(s, t) for t in variants) for s in source.union_type.variants)
        return any(is_castable(source, t) for t in variants)
    if source_kind == "union_type":
        return all(is_castable(s, target) for s in source.union_type.variants)
    if source_kind != target_kind:
        return False
    if source_kind == "simple":
        return source.simple == target.simple
    if source_kind == "list_type":
        return is_castable(source.list_type, target.list_type)
    if source_kind == "map_value_type":
        return is_castable(source.map_value_type, target.map_value_type)
    if source_kind == "record":
        source_fields = {f.name: f.type for f in source.record.fields}
        target_fields = {f.name: f.type for f in target.record.fields}
        return source_fields.keys() == target_fields.keys() and all(
            is_castable(source_fields[name], target_fields[name]) for name in source_fields
        )
    if source_kind == "enum_type":
        return set(source.enum_type.values) <= set(target.enum_type.values)
    if source_kind == "blob":
        return source.blob.dimensionality == target.blob.dimensionality and _formats_fit(
            source.blob.format, target.blob.format
        )
    if source_kind == "dataframe":
        if not _formats_fit(source.dataframe.format, target.dataframe.format):
            return False
        if not source.dataframe.columns:
            return True
        source_columns = {c.name: c.type for c in source.dataframe.columns}
        return all(
            c.name in source_columns and is_castable(source_columns[c.name], c.type)
            for c in target.dataframe.columns
        )
    return False


def _formats_fit(source: str, target: str) -> bool:
    return source == target or not source or not target
