"""The blob URIs a literal names: its files, directories and dataframes."""

from __future__ import annotations

from collections.abc import Iterator

from taskfabric.core.v1 import types_pb2


def blob_uris(value: types_pb2.LiteralMap | types_pb2.Literal) -> Iterator[str]:
    """URIs of every file, directory and dataframe inside a literal map or literal."""
    if isinstance(value, types_pb2.LiteralMap):
        for lit in value.literals.values():
            yield from blob_uris(lit)
        return
    kind = value.WhichOneof("value")
    if kind == "blob":
        yield value.blob.uri
    elif kind == "dataframe":
        yield value.dataframe.uri
    elif kind == "list":
        for item in value.list.literals:
            yield from blob_uris(item)
    elif kind in ("map", "record"):
        items = value.map.literals if kind == "map" else value.record.fields
        for item in items.values():
            yield from blob_uris(item)
    elif kind == "union":
        yield from blob_uris(value.union.value)
