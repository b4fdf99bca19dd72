"""Rendering literals for people (`executions show`) and as plain JSON values."""

from __future__ import annotations

import base64
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from taskfabric.core.v1 import types_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def format_size(size: int) -> str:
    """`12 B`, `1.2 kB`, `3.4 MB` (decimal units)."""
    value = float(size)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")


def format_datetime(seconds: int, nanos: int) -> str:
    """ISO 8601 in UTC with a `Z`, e.g. `2024-05-01T12:00:00Z`."""
    try:
        moment = _EPOCH + timedelta(seconds=seconds, microseconds=nanos // 1000)
    except OverflowError:
        return f"<timestamp {seconds}s>"
    return moment.isoformat().replace("+00:00", "Z")


def format_duration(seconds: int, nanos: int) -> str:
    """Compact duration, e.g. `1h30m`, `2d`, `1.5s`, `-90s`, `0s`."""
    total_nanos = seconds * 1_000_000_000 + nanos
    sign = "-" if total_nanos < 0 else ""
    rest, frac = divmod(abs(total_nanos), 1_000_000_000)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest or frac or not parts:
        text = str(rest) if not frac else f"{rest}.{frac:09d}".rstrip("0")
        parts.append(f"{text}s")
    return sign + "".join(parts)


def format_duration_iso(seconds: int, nanos: int) -> str:
    """ISO 8601 duration, e.g. `PT1H30M`, `P2D`, `-PT1.5S`, `PT0S`."""
    compact = format_duration(seconds, nanos)
    sign = "-" if compact.startswith("-") else ""
    compact = compact.removeprefix("-")
    days, _, time_part = compact.partition("d") if "d" in compact else ("", "", compact)
    text = sign + "P" + (f"{days}D" if days else "")
    if time_part or not days:
        text += "T" + time_part.upper()
    return text


def _short_hash(content_hash: str) -> str:
    algorithm, _, digest = content_hash.partition(":")
    if not digest:
        return content_hash or "unhashed"
    return f"{algorithm}:{digest[:8]}…"


def literal_to_json(lit: pb.Literal) -> Any:
    """A plain JSON-able value: ints, floats (non-finite ones as the strings "inf", "-inf"
    and "nan"), str, bool, None, lists, dicts (sorted keys); bytes as "base64:<data>";
    datetimes as ISO 8601 UTC strings; durations as ISO 8601 strings ("PT1H30M"); enums
    as the member name; a union as its value; files, directories and dataframes as
    objects with kind, uri, content_hash (and size_bytes/format).

    Strings produced here are accepted by `parse_cli_value` for the same type.
    """
    kind = lit.WhichOneof("value")
    if kind == "integer":
        return lit.integer
    if kind == "float":
        value = lit.float
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if kind == "string":
        return lit.string
    if kind == "boolean":
        return lit.boolean
    if kind == "bytes":
        return "base64:" + base64.b64encode(lit.bytes).decode()
    if kind == "datetime":
        return format_datetime(lit.datetime.seconds, lit.datetime.nanos)
    if kind == "duration":
        return format_duration_iso(lit.duration.seconds, lit.duration.nanos)
    if kind == "none" or kind is None:
        return None
    if kind == "list":
        return [literal_to_json(item) for item in lit.list.literals]
    if kind in ("map", "record"):
        entries = lit.map.literals if kind == "map" else lit.record.fields
        return {key: literal_to_json(entries[key]) for key in sorted(entries)}
    if kind == "enum":
        return lit.enum.value
    if kind == "union":
        return literal_to_json(lit.union.value)
    if kind == "blob":
        multipart = lit.blob.type.dimensionality == pb.BLOB_DIMENSIONALITY_MULTIPART
        return {
            "kind": "directory" if multipart else "file",
            "uri": lit.blob.uri,
            "content_hash": lit.blob.content_hash,
            "size_bytes": lit.blob.size_bytes,
            "format": lit.blob.type.format,
        }
    return {
        "kind": "dataframe",
        "uri": lit.dataframe.uri,
        "content_hash": lit.dataframe.content_hash,
        "format": lit.dataframe.type.format,
    }


def literal_to_display(lit: pb.Literal, *, max_items: int = 20, max_chars: int = 200) -> str:
    """A compact, JSON-like rendering for people.

    Lists and maps show at most `max_items` entries (then `… +N more`), strings and bytes at
    most `max_chars` characters (then `… (N chars)`); map and record keys are sorted;
    files look like `File(sha256:ab12cd34…, 1.2 kB) file:///…`.
    """
    out: list[str] = []
    _display(lit, out, max_items, max_chars)
    return "".join(out)


def _display(lit: pb.Literal, out: list[str], max_items: int, max_chars: int) -> None:
    kind = lit.WhichOneof("value")
    if kind == "integer":
        out.append(str(lit.integer))
    elif kind == "float":
        out.append(repr(lit.float))
    elif kind == "string":
        text = lit.string
        if len(text) > max_chars:
            out.append(json.dumps(text[:max_chars] + "…", ensure_ascii=False))
            out.append(f" ({len(text)} chars)")
        else:
            out.append(json.dumps(text, ensure_ascii=False))
    elif kind == "boolean":
        out.append("true" if lit.boolean else "false")
    elif kind == "bytes":
        data = lit.bytes
        if len(data) > max_chars:
            out.append(repr(data[:max_chars])[:-1] + "…'" + f" ({format_size(len(data))})")
        else:
            out.append(repr(data))
    elif kind == "datetime":
        out.append(format_datetime(lit.datetime.seconds, lit.datetime.nanos))
    elif kind == "duration":
        out.append(format_duration(lit.duration.seconds, lit.duration.nanos))
    elif kind == "none" or kind is None:
        out.append("null")
    elif kind == "list":
        items = lit.list.literals
        out.append("[")
        for index, item in enumerate(items[:max_items]):
            if index:
                out.append(", ")
            _display(item, out, max_items, max_chars)
        if len(items) > max_items:
            out.append(f", … +{len(items) - max_items} more")
        out.append("]")
    elif kind in ("map", "record"):
        entries = lit.map.literals if kind == "map" else lit.record.fields
        keys = sorted(entries)
        out.append("{")
        for index, key in enumerate(keys[:max_items]):
            if index:
                out.append(", ")
            out.append(json.dumps(key, ensure_ascii=False) + ": ")
            _display(entries[key], out, max_items, max_chars)
        if len(keys) > max_items:
            out.append(f", … +{len(keys) - max_items} more")
        out.append("}")
    elif kind == "enum":
        out.append(lit.enum.value)
    elif kind == "union":
        _display(lit.union.value, out, max_items, max_chars)
    elif kind == "blob":
        blob = lit.blob
        multipart = blob.type.dimensionality == pb.BLOB_DIMENSIONALITY_MULTIPART
        name = "Directory" if multipart else "File"
        if blob.type.format:
            name += f"[{blob.type.format}]"
        hash_text = _short_hash(blob.content_hash)
        out.append(f"{name}({hash_text}, {format_size(blob.size_bytes)}) {blob.uri}")
    else:
        frame = lit.dataframe
        name = f"DataFrame[{frame.type.format}]" if frame.type.format else "DataFrame"
        out.append(f"{name}({_short_hash(frame.content_hash)}) {frame.uri}")
