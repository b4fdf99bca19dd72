"""Canonical encoding and hashing of literals, for cache keys.

The encoding is a tagged, length-prefixed byte string with these rules:

- maps and records are encoded in sorted key order (insertion order is irrelevant);
- files, directories and dataframes are encoded by their content hash (and blob
  dimensionality), never their URI: the same content at another path hashes equal;
- a union value is encoded with its variant type, canonicalized (record fields sorted);
- `-0.0` encodes as `0.0` and every NaN as one NaN (they compare equal in Python, or are
  all "not a number"), so hashes do not depend on how a float was computed.

Hashes are `sha256:<hex>` of a version prefix plus the encoding; a change of the encoding
must change the prefix so that old cache entries are not confused with new ones.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Collection, Mapping

from taskfabric.core.v1 import types_pb2 as pb

_VERSION = b"taskfabric-literal-v1\0"
#: a digest that has hashed `_VERSION`, copied for each hash
_VERSIONED = hashlib.sha256(_VERSION)
_NAN = struct.pack(">d", math.nan)
_ZERO = struct.pack(">d", 0.0)
_pack_q = struct.Struct(">q").pack
_pack_Q = struct.Struct(">Q").pack
_pack_qi = struct.Struct(">qi").pack


def _text(out: bytearray, text: str) -> None:
    data = text.encode()
    out += _pack_Q(len(data))
    out += data


def _encode_type(out: bytearray, lt: pb.LiteralType) -> None:
    kind = lt.WhichOneof("type")
    if kind == "simple":
        out += b"S" + _pack_q(lt.simple)
    elif kind == "list_type":
        out += b"L"
        _encode_type(out, lt.list_type)
    elif kind == "map_value_type":
        out += b"M"
        _encode_type(out, lt.map_value_type)
    elif kind == "record":
        out += b"R"
        _text(out, lt.record.name)
        fields = sorted(lt.record.fields, key=lambda f: f.name)
        out += _pack_Q(len(fields))
        for field in fields:
            _text(out, field.name)
            _encode_type(out, field.type)
    elif kind == "enum_type":
        out += b"E"
        _text(out, lt.enum_type.name)
        values = sorted(lt.enum_type.values)
        out += _pack_Q(len(values))
        for value in values:
            _text(out, value)
    elif kind == "union_type":
        variants = sorted(canonical_type_bytes(v) for v in lt.union_type.variants)
        out += b"U" + _pack_Q(len(variants))
        for variant in variants:
            out += _pack_Q(len(variant)) + variant
    elif kind == "blob":
        out += b"B" + _pack_q(lt.blob.dimensionality)
        _text(out, lt.blob.format)
    elif kind == "dataframe":
        out += b"D"
        _text(out, lt.dataframe.format)
        columns = sorted(lt.dataframe.columns, key=lambda c: c.name)
        out += _pack_Q(len(columns))
        for column in columns:
            _text(out, column.name)
            _encode_type(out, column.type)
    else:
        raise ValueError("cannot encode a LiteralType with no type set")


def canonical_type_bytes(lt: pb.LiteralType) -> bytes:
    """A canonical encoding of a literal type (record fields, enum values and dataframe
    columns sorted; union variants sorted)."""
    out = bytearray()
    _encode_type(out, lt)
    return bytes(out)


def _encode_map(out: bytearray, entries: Mapping[str, pb.Literal], tag: bytes) -> None:
    keys = sorted(entries)
    out += tag + _pack_Q(len(keys))
    for key in keys:
        _text(out, key)
        _encode(out, entries[key])


def _encode(out: bytearray, lit: pb.Literal) -> None:
    kind = lit.WhichOneof("value")
    if kind == "integer":
        out += b"i" + _pack_q(lit.integer)
    elif kind == "float":
        value = lit.float
        out += b"f" + (
            _NAN if math.isnan(value) else _ZERO if value == 0 else struct.pack(">d", value)
        )
    elif kind == "string":
        out += b"s"
        _text(out, lit.string)
    elif kind == "boolean":
        out += b"b\1" if lit.boolean else b"b\0"
    elif kind == "bytes":
        out += b"y" + _pack_Q(len(lit.bytes)) + lit.bytes
    elif kind == "datetime":
        out += b"t" + _pack_qi(lit.datetime.seconds, lit.datetime.nanos)
    elif kind == "duration":
        out += b"d" + _pack_qi(lit.duration.seconds, lit.duration.nanos)
    elif kind == "none":
        out += b"n"
    elif kind == "list":
        items = lit.list.literals
        out += b"L" + _pack_Q(len(items))
        for item in items:
            _encode(out, item)
    elif kind == "map":
        _encode_map(out, lit.map.literals, b"M")
    elif kind == "record":
        _encode_map(out, lit.record.fields, b"R")
    elif kind == "enum":
        out += b"e"
        _text(out, lit.enum.value)
    elif kind == "union":
        variant = canonical_type_bytes(lit.union.variant)
        out += b"U" + _pack_Q(len(variant)) + variant
        _encode(out, lit.union.value)
    elif kind == "blob":
        if not lit.blob.content_hash:
            raise ValueError(f"blob {lit.blob.uri} has no content hash: cannot hash it by content")
        out += b"B" + _pack_q(lit.blob.type.dimensionality)
        _text(out, lit.blob.content_hash)
    elif kind == "dataframe":
        if not lit.dataframe.content_hash:
            raise ValueError(
                f"dataframe {lit.dataframe.uri} has no content hash: cannot hash it by content"
            )
        out += b"D"
        _text(out, lit.dataframe.content_hash)
    else:
        raise ValueError("cannot encode a Literal with no value set")


def canonical_bytes(lit: pb.Literal) -> bytes:
    """The canonical encoding of a literal (see the module docstring).

    Raises ValueError for an unset literal or a blob/dataframe without a content hash.
    """
    out = bytearray()
    _encode(out, lit)
    return bytes(out)


def literal_hash(lit: pb.Literal) -> str:
    """`sha256:<hex>` of the literal's canonical encoding."""
    digest = _VERSIONED.copy()
    digest.update(canonical_bytes(lit))
    return "sha256:" + digest.hexdigest()


def literal_map_hash(
    m: Mapping[str, pb.Literal] | pb.LiteralMap, *, exclude: Collection[str] = ()
) -> str:
    """`sha256:<hex>` of named literals (e.g. a task's inputs), ignoring the names in
    `exclude`; the order in which the map was built does not matter."""
    entries: Mapping[str, pb.Literal] = m.literals if isinstance(m, pb.LiteralMap) else m
    if exclude:
        entries = {k: v for k, v in entries.items() if k not in exclude}
    out = bytearray()
    _encode_map(out, entries, b"M")
    digest = _VERSIONED.copy()  # (a copy costs a third of a new hash object)
    digest.update(out)
    return "sha256:" + digest.hexdigest()
